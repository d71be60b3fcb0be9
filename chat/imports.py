"""Importing an export of chat/exports.py back as new conversations.

A file is someone's upload, so it is checked whole before anything is stored: every
field, every parent link, and every image (through the same checks as an upload). A
file that is not ours, is cut short, or names an image it does not carry is refused
with a sentence, and nothing of it is stored.

It is read in three steps: the JSON and its fields in a worker thread, the images in the
image worker processes an upload's go to (prepared in the server, an import of photos held
the server's cores and the GIL the event loop needs for seconds), and the rows in one
transaction in the request's database thread.

Two things are not taken as they are, since the page shows them in the app's own
voice and a file could forge them: an answer's notes are kept only when they are
sentences the app itself writes (`chat.sentences.note_checked`: by code, or as the English
text of exports made before notes had codes), and an error's sentence is replaced by one
that says it came with the import. Refusals are said in the language of the page that
sent the file.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext

from chat.attachments import ImageWorkerLost, attachment_create, image_prepare_elsewhere
from chat.catalog import tokens_cost
from chat.input_checks import params_validate, text_storable, tools_validate
from chat.exports import FORMAT, VERSION
from chat.images import ImageRefused, PreparedImage
from chat.models import Conversation, Message
from chat.refusals import SendRefused, refusal_said
from chat.sentences import error_fields, note_checked, sentence

# Larger exports can be split: export a selection at a time.
IMPORT_MAX_BYTES = 200_000_000
CONVERSATIONS_MAX = 1000
MESSAGES_MAX = 20_000
PARAMS = {"temperature", "top_p", "max_tokens"}


class ImportRefused(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class _Image:
    raw: bytes  # as the file carries it; b"" once prepared
    name: str
    where: str  # how a refusal names it
    prepared: PreparedImage | None = None


@dataclass
class _Message:
    fields: dict[str, Any]
    parent: int | None
    created_at: datetime | None
    images: list[_Image] = field(default_factory=list)


@dataclass
class _Conversation:
    fields: dict[str, Any]
    leaf: int | None
    created_at: datetime | None
    updated_at: datetime | None
    messages: list[_Message]


async def import_file(*, user: AbstractBaseUser, raw: bytes) -> list[int]:
    """Check `raw` whole, then store its conversations; returns their new ids, in the
    file's order. Raises ImportRefused with the reason, having stored nothing."""
    checked = await sync_to_async(_file_checked, thread_sensitive=False)(raw)
    await _images_prepare([image for c in checked for m in c.messages for image in m.images])
    return await sync_to_async(_file_store)(user, checked)


def _file_checked(raw: bytes) -> list[_Conversation]:
    if len(raw) > IMPORT_MAX_BYTES:
        raise ImportRefused(gettext("That file is too large to import (the limit is %(limit)s MB). "
                                    "Export fewer conversations at a time.") % {"limit": IMPORT_MAX_BYTES // 1_000_000})
    try:
        text = raw.decode("utf-8")  # what exports are; json.loads would guess UTF-16 from a BOM
    except UnicodeDecodeError:
        raise ImportRefused(gettext("That file is not a yiweb export (it is not text).")) from None
    if not text.lstrip().startswith("{"):
        raise ImportRefused(gettext("That file is not a yiweb export (exports are .json files this app wrote)."))
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise ImportRefused(gettext(
            "That file is not a complete yiweb export: its JSON is cut short or damaged. Export it again."
        )) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ImportRefused(gettext("That file is not a yiweb export."))
    if data.get("version") != VERSION:
        raise ImportRefused(gettext("That export's version (%(version)s) is not one this server can read.")
                             % {"version": repr(data.get("version"))})
    conversations = data.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise ImportRefused(gettext("That export holds no conversations."))
    if len(conversations) > CONVERSATIONS_MAX:
        raise ImportRefused(gettext("That export holds more than %(limit)s conversations. Import it in parts.")
                             % {"limit": CONVERSATIONS_MAX})
    return [_conversation(c, i + 1) for i, c in enumerate(conversations)]


async def _images_prepare(images: list[_Image]) -> None:
    """Each image through an upload's checks, in the image workers; the first refused, in
    the file's order, refuses the file. At most IMAGE_WORKERS of an import's images wait
    for the workers at once, so that uploads meanwhile are not queued behind all of them."""
    room = asyncio.Semaphore(settings.IMAGE_WORKERS)

    async def prepared(image: _Image) -> PreparedImage:
        async with room:
            return await image_prepare_elsewhere(image.raw)

    tasks = [asyncio.ensure_future(prepared(image)) for image in images]
    try:
        for image, task in zip(images, tasks):
            try:
                image.prepared, image.raw = await task, b""
            except (ImageRefused, ImageWorkerLost) as refused:
                raise ImportRefused(
                    gettext("%(where)s: %(reason)s") % {"where": image.where, "reason": refusal_said(refused)}
                ) from None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # every refusal read, none logged as lost


def _file_store(user: AbstractBaseUser, checked: list[_Conversation]) -> list[int]:
    with transaction.atomic():
        return [_store(user, c) for c in checked]


def _conversation_params(raw: Any, where: str) -> dict[str, Any]:
    """A conversation's sampling parameters, which its next sends go with: in the ranges a
    send's must be in (exports from before they existed have none)."""
    if not isinstance(raw, dict) or set(raw) - PARAMS:
        raise ImportRefused(gettext("%(where)s has parameters this app does not know.") % {"where": where})
    try:
        params = params_validate(raw)
    except SendRefused as refused:
        raise ImportRefused(gettext("%(where)s's settings cannot be used: %(reason)s")
                             % {"where": where, "reason": refusal_said(refused)}) from None
    return {name: value for name, value in params.items() if value is not None}


def _conversation(raw: Any, number: int) -> _Conversation:
    where = gettext("Conversation %(number)s") % {"number": number}
    if not isinstance(raw, dict):
        raise ImportRefused(gettext("%(where)s of that export is damaged.") % {"where": where})
    fields = {
        "title": _text(raw.get("title", ""), gettext("%(where)s's title") % {"where": where}, 200),
        "model": _text(raw.get("model"), gettext("%(where)s's model") % {"where": where}, 100, required=True),
        "system_prompt": _text(raw.get("system_prompt", ""), gettext("%(where)s's system prompt") % {"where": where}),
        "pinned": _flag(raw.get("pinned", False), where),
        "archived": _flag(raw.get("archived", False), where),
        "title_source": raw.get("title_source")
        if raw.get("title_source") in Conversation.TitleSource.values
        else Conversation.TitleSource.USER,
        "tools": _flag(raw.get("tools", False), where),
        "tool_choice": _tool_choice(raw.get("tool_choice", "auto")),
        "params": _conversation_params(raw.get("params") or {}, where),
    }
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ImportRefused(gettext("%(where)s of that export has no messages.") % {"where": where})
    if len(messages) > MESSAGES_MAX:
        raise ImportRefused(gettext("%(where)s has more than %(limit)s messages, more than this server imports.")
                             % {"where": where, "limit": MESSAGES_MAX})
    checked = [_message(m, i, number) for i, m in enumerate(messages)]
    leaf = raw.get("leaf")
    if leaf is not None and (type(leaf) is not int or not 0 <= leaf < len(checked)):
        raise ImportRefused(gettext("%(where)s of that export names a message it does not hold.") % {"where": where})
    return _Conversation(fields, leaf, _when(raw.get("created_at")), _when(raw.get("updated_at")), checked)


def _message(raw: Any, index: int, conversation: int) -> _Message:
    where = gettext("Message %(number)s of conversation %(conversation)s") % {
        "number": index + 1, "conversation": conversation}
    if not isinstance(raw, dict):
        raise ImportRefused(gettext("%(where)s is damaged.") % {"where": where})
    parent = raw.get("parent")
    if parent is not None and (type(parent) is not int or not 0 <= parent < index):
        raise ImportRefused(
            gettext("%(where)s answers a message that is not before it in the export.") % {"where": where})
    role = raw.get("role")
    if role not in Message.Role.values:
        raise ImportRefused(gettext("%(where)s has no role this app knows.") % {"where": where})
    status = raw.get("status", Message.Status.COMPLETE)
    if status not in Message.Status.values:
        raise ImportRefused(gettext("%(where)s has no status this app knows.") % {"where": where})
    if status == Message.Status.STREAMING:
        status = Message.Status.INTERRUPTED  # nothing is writing it any more
    params = raw.get("params") or {}
    if not isinstance(params, dict) or set(params) - PARAMS or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in params.values()
    ):
        raise ImportRefused(gettext("%(where)s has parameters this app does not know.") % {"where": where})
    error_code = _text(raw.get("error_code", ""), where, 32)
    fields = {
        "role": role,
        "status": status,
        "content": _text(raw.get("content", ""), where),
        "model": _text(raw.get("model", ""), where, 100),
        "params": params,
        "finish_reason": _text(raw.get("finish_reason", ""), where, 32),
        "error_code": error_code,
        **(error_fields(sentence("imported_error", code=error_code))
           if status == Message.Status.ERROR or error_code else {"error_message": "", "error_sentence": None}),
        "tool_call_id": _text(raw.get("tool_call_id", ""), where, 100),
        "name": _text(raw.get("name", ""), where, 100),
        "tool_calls": _tool_calls(raw.get("tool_calls") or [], where) if role == Message.Role.ASSISTANT else [],
        "notes": [
            note for note in map(note_checked, raw.get("notes")) if note is not None
        ] if isinstance(raw.get("notes"), list) else [],
    }
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "ttft_ms", "duration_ms"):
        value = raw.get(name)
        if value is not None and (type(value) is not int or not 0 <= value < 2**31):
            raise ImportRefused(gettext("%(where)s has a figure (%(name)s) that is not a whole number.")
                                 % {"where": where, "name": name})
        fields[name] = value
    fields["usage_estimated"] = True if raw.get("usage_estimated") is True else None
    if role == Message.Role.ASSISTANT:  # what it costs at today's prices, as an answer ending here stores it
        fields["cost_usd"] = tokens_cost(fields["model"], fields["prompt_tokens"], fields["completion_tokens"])
    fields["seq"] = 1 if fields["content"] else 0
    images = raw.get("images") or []
    if not isinstance(images, list):
        raise ImportRefused(gettext("%(where)s's images are damaged.") % {"where": where})
    return _Message(fields, parent, _when(raw.get("created_at")), [
        _image(image, gettext("Image %(number)s of message %(message)s of conversation %(conversation)s") % {
            "number": n + 1, "message": index + 1, "conversation": conversation}) for n, image in enumerate(images)
    ])


def _image(raw: Any, where: str) -> _Image:
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, str) or not data:
        raise ImportRefused(gettext("%(where)s is named but not carried in the file. Export it again with its images.")
                             % {"where": where})
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImportRefused(gettext("%(where)s is damaged (its data is not base64).") % {"where": where}) from None
    return _Image(decoded, raw.get("name") if isinstance(raw.get("name"), str) else "", where)


def _tool_choice(value: Any) -> Any:
    """A conversation's tool_choice as the send check takes it; one naming a tool this
    server does not have becomes "auto" (the model decides), not a refused file."""
    try:
        return tools_validate(None, value)[1] or "auto"
    except SendRefused:
        return "auto"


def _tool_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """An answer's calls, in the API's shape: they are sent again with the conversation,
    and the page shows them."""
    if not isinstance(value, list) or len(value) > 128:
        raise ImportRefused(gettext("%(where)s has tool calls this app cannot read.") % {"where": where})
    calls = []
    for call in value:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or call.get("type", "function") != "function":
            raise ImportRefused(gettext("%(where)s has tool calls this app cannot read.") % {"where": where})
        calls.append({
            "id": _text(call.get("id"), where, 100, required=True),
            "type": "function",
            "function": {"name": _text(function.get("name"), where, 100, required=True),
                         "arguments": _text(function.get("arguments", ""), where)},
        })
    return calls


def _text(value: Any, where: str, limit: int | None = None, *, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ImportRefused(gettext("%(where)s is missing or not text.") % {"where": where})
    if (limit is not None and len(value) > limit) or not text_storable(value):
        raise ImportRefused(gettext("%(where)s holds text this app cannot store.") % {"where": where})
    return value


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ImportRefused(gettext("%(where)s of that export is damaged.") % {"where": where})
    return value


def _when(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _store(user: AbstractBaseUser, checked: _Conversation) -> int:
    conversation = Conversation.objects.create(user=user, **checked.fields)
    made: list[Message] = []
    for message in checked.messages:
        row = Message.objects.create(
            conversation=conversation, parent=made[message.parent] if message.parent is not None else None,
            **message.fields,
        )
        for image in message.images:
            attachment = attachment_create(user=user, image=image.prepared, original_name=image.name)
            attachment.message = row
            attachment.save(update_fields=["message"])
        if message.created_at is not None:
            row.created_at = message.created_at
        made.append(row)
    Message.objects.bulk_update(made, ["created_at"])
    Conversation.objects.filter(pk=conversation.pk).update(
        leaf=made[checked.leaf] if checked.leaf is not None else None,
        created_at=checked.created_at or conversation.created_at,
        updated_at=checked.updated_at or conversation.updated_at,
    )
    return conversation.pk
