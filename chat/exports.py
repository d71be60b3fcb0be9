"""Exporting conversations: as JSON with every branch and every image (what
chat/imports.py takes back), and as Markdown of the branch shown, for reading.

Reads only. The JSON names its messages by their place in the export, not by database
ids, so an import makes new rows that continue exactly like the originals.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from chat.history import IMAGES, message_images, message_thread
from chat.models import Conversation, Message
from chat.sentences import said

FORMAT = "yiweb-export"
VERSION = 1

# The fields of a message that travel as they are (the rest are mapped: parent, images).
# Notes travel by code and params (chat/sentences.py), for the importing page to say.
MESSAGE_FIELDS = (
    "role", "content", "status", "model", "params", "finish_reason", "prompt_tokens", "completion_tokens",
    "total_tokens", "usage_estimated", "ttft_ms", "duration_ms", "error_code", "error_message", "notes", "tool_calls",
    "tool_call_id", "name",
)
CONVERSATION_FIELDS = (
    "title", "title_source", "model", "system_prompt", "params", "pinned", "archived", "tools", "tool_choice",
)


def conversations_owned(*, user: AbstractBaseUser, conversation_ids: list[int] | None) -> list[Conversation]:
    """The user's own conversations among `conversation_ids` (None: all of them), newest first."""
    rows = Conversation.objects.filter(user=user)
    if conversation_ids is not None:
        rows = rows.filter(pk__in=conversation_ids)
    return list(rows.order_by("-updated_at", "-id"))


def export_json(conversations: list[Conversation]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "conversations": [_conversation_json(c) for c in conversations],
    }


def _conversation_json(conversation: Conversation) -> dict[str, Any]:
    messages = list(Message.objects.filter(conversation=conversation).prefetch_related(IMAGES).order_by("pk"))
    place = {m.pk: i for i, m in enumerate(messages)}
    shown = message_thread(conversation=conversation)
    return {
        **{name: getattr(conversation, name) for name in CONVERSATION_FIELDS},
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "leaf": place[shown[-1].pk] if shown else None,
        "messages": [
            {
                "parent": place.get(m.parent_id),
                **{name: getattr(m, name) for name in MESSAGE_FIELDS},
                # The sentence in the exporter's language; an import writes its own.
                "error_message": said(m.error_sentence) if m.error_sentence else m.error_message,
                "created_at": m.created_at.isoformat(),
                "images": [_image_json(a) for a in message_images(m)],
            }
            for m in messages
        ],
    }


def _image_json(attachment) -> dict[str, Any]:
    with attachment.file.open("rb") as fh:
        data = fh.read()
    return {
        "name": attachment.original_name,
        "media_type": attachment.media_type,
        "original_format": attachment.original_format,
        "width": attachment.width,
        "height": attachment.height,
        "data": base64.b64encode(data).decode("ascii"),
    }


def export_markdown(conversations: list[Conversation]) -> str:
    """The branch each conversation shows, as a person would read it."""
    return "\n\n---\n\n".join(_conversation_markdown(c) for c in conversations) + "\n"


# How the Markdown names an answer that did not end complete.
_ENDINGS = {
    Message.Status.STREAMING: gettext_noop("still being written"),
    Message.Status.STOPPED: gettext_noop("stopped"),
    Message.Status.ERROR: gettext_noop("error"),
    Message.Status.INTERRUPTED: gettext_noop("interrupted"),
}


def _conversation_markdown(conversation: Conversation) -> str:
    """In the language of the page that asked for it (its notes and errors too); the
    conversation's own words as they were written."""
    lines = [f"# {conversation.title or gettext('Conversation')}", ""]
    lines.append(gettext("Model: %(model)s · started %(when)s UTC") % {
        "model": conversation.model, "when": f"{conversation.created_at:%Y-%m-%d %H:%M}"})
    if conversation.system_prompt:
        lines += ["", gettext("System prompt:"), "", _quoted(conversation.system_prompt)]
    for message in message_thread(conversation=conversation):
        if message.role == Message.Role.USER:
            lines += ["", "## " + gettext("You"), ""]
            lines += [
                "*[" + gettext("image: %(name)s, %(width)s×%(height)s") % {
                    "name": a.original_name or gettext("attached image"), "width": a.width, "height": a.height} + "]*"
                for a in message_images(message)
            ]
            if message.content:
                lines += [message.content]
        elif message.role == Message.Role.ASSISTANT:
            lines += ["", f"## {message.model or gettext('Assistant')}", ""]
            lines += [f"*{text}*" for text in (said(note) for note in message.notes) if text]
            if message.content:
                lines += [message.content]
            for call in message.tool_calls:
                function = (call.get("function") or {}) if isinstance(call, dict) else {}
                arguments = str(function.get("arguments", ""))
                lines += ["", "*" + gettext("Calls `%(name)s` with:") % {"name": function.get("name", "")} + "*", "",
                          *_fenced(arguments)]
            if message.status != Message.Status.COMPLETE:
                ending = gettext(_ENDINGS.get(message.status, message.status))
                error = said(message.error_sentence) if message.error_sentence else message.error_message
                lines += ["", f"*({ending}: {error})*" if error else f"*({ending})*"]
        elif message.role == Message.Role.TOOL:
            facts = [f"{message.duration_ms} ms"] if message.duration_ms is not None else []
            if message.error_code or message.status != Message.Status.COMPLETE:
                facts.append(gettext("failed") if message.status == Message.Status.COMPLETE
                             else gettext(_ENDINGS.get(message.status, message.status)))
            heading = (gettext("Tool `%(name)s` returned") % {"name": message.name} if message.name
                       else gettext("Tool returned"))
            lines += ["", " · ".join(["## " + heading, *facts]), "", *_fenced(message.content)]
    return "\n".join(lines)


def _fenced(text: str) -> list[str]:
    """A tool's JSON (arguments, a result) as a code block, indented when it is JSON; the
    fence longer than any run of backticks inside, so no text can close it early."""
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        language = "json"
    except (ValueError, RecursionError):  # not JSON (a model's broken arguments), or nested absurdly deep
        language = ""
    fence = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", text))])
    return [fence + language, text, fence]


def _quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.splitlines())
