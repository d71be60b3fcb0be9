"""The chat completion request for an answer: system prompt, the thread before it, parameters.

Messages, attachments and tool results are turned into the reference's shapes here
and nowhere else: user `content` becomes a list of `text` and `image_url` parts when
images are attached; assistant tool calls and `role: tool` results pass through.

In two steps, so that no image is read while the database is locked:
- `request_plan`, in the send's transaction: decides from counts alone (a token
  estimate of the text, IMAGE_TOKEN_COST per image) what fits the model's window minus
  the room for the answer. It leaves out the oldest earlier images first, then the
  oldest earlier turns, never the current one, and says so in `notes`; a current turn
  that cannot fit even alone, images and all, is refused (`RequestTooLarge`) before
  anything is stored.
- `request_body`, when the generation starts, in a worker thread when there are
  images: reads each image kept and puts it in as a `data:` URL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext_noop

from chat.attachments import attachment_data_url
from chat.catalog import REFERENCE_MODELS, model_info
from chat.history import message_images
from chat.models import Attachment, Conversation, Message
from chat.sentences import Sentence, sentence, window_sentence
from chat.tools import tool_specs
from chat.upstream import Credential

CONTINUE_PROMPT = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without repeating "
    "anything and without any preamble."
)
# What the model reads where an earlier image was left out, so it knows one was there.
IMAGE_LEFT_OUT = "[An image was here; it was left out to fit the context window.]"
# Each message costs a few tokens beyond its text (its role, separators).
MESSAGE_OVERHEAD_TOKENS = 4


class RequestTooLarge(Exception):
    """The current turn alone, with its images, does not fit the model's window: a refusal's
    sentence (chat/refusals.py), its template and params."""

    def __init__(self, template: str, params: dict[str, Any]):
        super().__init__(template % params)
        self.template = template
        self.params = params


class ImageUnreadable(Exception):
    """A stored image of the thread could not be read (its file is gone from storage)."""

    sentence = sentence("image_unreadable")


@dataclass
class RequestPlan:
    """An answer's request with its images not read yet: each `image_url` part's URL is
    filled by `request_body` from `images`, in order."""

    body: dict[str, Any]
    images: list[Attachment] = field(default_factory=list)
    notes: list[Sentence] = field(default_factory=list)  # chat/sentences.py
    # Who the request is made as (chat/credentials.py); None only where nothing is sent.
    credential: Credential | None = None


def tokens_estimate(text: str) -> int:
    """About how many tokens `text` is: a quarter of a token per ASCII character (English
    runs about four characters a token) and one per other character (a Chinese character
    is about one token). Erring high is the safe side: it leaves out a little too much
    rather than earning the provider's 400."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / 4) + len(text) - ascii_chars


def request_build(*, conversation: Conversation, thread: list[Message], answer: Message) -> dict[str, Any]:
    """The whole request at once (reads the images): for callers not in a transaction."""
    return request_body(request_plan(conversation=conversation, thread=thread, answer=answer))


def request_body(plan: RequestPlan) -> dict[str, Any]:
    """The request with every kept image read in as a `data:` URL (file IO: off the event loop)."""
    if not plan.images:
        return plan.body
    try:
        urls = iter([attachment_data_url(a) for a in plan.images])
    except OSError as error:
        raise ImageUnreadable(str(error)) from error
    messages = []
    for message in plan.body["messages"]:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image_url", "image_url": {"url": next(urls)}} if part["type"] == "image_url" else part
                for part in content
            ]
            message = {**message, "content": content}
        messages.append(message)
    return {**plan.body, "messages": messages}


@dataclass
class _Entry:
    """One message of the request, with the images it may carry, while fitting."""

    message: dict[str, Any]
    turn: int  # -1: a system prompt (always sent); the current turn is the highest
    images: list[Attachment] = field(default_factory=list)
    images_left_out: int = 0

    def tokens(self) -> int:
        return (
            MESSAGE_OVERHEAD_TOKENS
            + tokens_estimate(_text_of(self.message))
            + settings.IMAGE_TOKEN_COST * len(self.images)
            + tokens_estimate(IMAGE_LEFT_OUT) * self.images_left_out
        )

    def to_message(self) -> dict[str, Any]:
        if not self.images and not self.images_left_out:
            return self.message
        text = self.message["content"]
        if self.images_left_out:
            text = "\n".join(filter(None, [text, *[IMAGE_LEFT_OUT] * self.images_left_out]))
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [{"type": "image_url", "image_url": {"url": None}} for _ in self.images]
        return {**self.message, "content": parts}


def request_plan(*, conversation: Conversation, thread: list[Message], answer: Message) -> RequestPlan:
    """What `answer`'s request will send, fitted to its model's window (see the module's doc)."""
    model = answer.model or conversation.model
    entries = _entries(conversation, thread, answer)
    notes = _fit(entries, model=model, max_tokens=answer.params.get("max_tokens"))
    kept = [e for e in entries if e.turn is not None]
    body: dict[str, Any] = {"model": model, "messages": [e.to_message() for e in kept]}
    for name in ("temperature", "top_p", "max_tokens"):
        if answer.params.get(name) is not None:
            body[name] = answer.params[name]
    if conversation.tools:
        if model in REFERENCE_MODELS and not model_info(model).tools:
            # A Yi model that calls no tools: offered them, the API would refuse or ignore them.
            notes.append(sentence("tools_not_offered", model=model))
        else:
            body["tools"] = tool_specs()
            body["tool_choice"] = conversation.tool_choice
    return RequestPlan(body=body, images=[image for e in kept for image in e.images], notes=notes)


def _entries(conversation: Conversation, thread: list[Message], answer: Message) -> list[_Entry]:
    entries: list[_Entry] = []
    if conversation.system_prompt:
        entries.append(_Entry({"role": "system", "content": conversation.system_prompt}, -1))
    turn = 0
    for message in thread:
        if message.pk is not None and message.pk == answer.pk:
            break
        if message.role == Message.Role.USER:
            turn += 1
            images = list(message_images(message)) if message.pk else []
            entries.append(_Entry({"role": "user", "content": message.content}, turn, images))
        elif message.role == Message.Role.ASSISTANT:
            # An answer that failed before writing anything has nothing to tell the model.
            if not message.content and not message.tool_calls:
                continue
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if message.tool_calls:
                entry["tool_calls"] = message.tool_calls
            entries.append(_Entry(entry, turn))
        elif message.role == Message.Role.TOOL:
            entries.append(_Entry(
                {"role": "tool", "tool_call_id": message.tool_call_id, "name": message.name, "content": message.content},
                turn,
            ))
        elif message.role == Message.Role.SYSTEM:
            entries.append(_Entry({"role": "system", "content": message.content}, -1))
    if answer.content:
        # Continuing an answer that was cut short: the model sees what it wrote so far,
        # as part of the current turn.
        entries.append(_Entry({"role": "assistant", "content": answer.content}, turn))
        entries.append(_Entry({"role": "user", "content": CONTINUE_PROMPT}, turn))
    return entries


def _fit(entries: list[_Entry], *, model: str, max_tokens: int | None) -> list[str]:
    """Leave out what does not fit `model`'s window (entries left out get `turn` None);
    returns the notes that say what was left out."""
    window = model_info(model).context_window
    if window is None or not entries:
        return []
    budget = window - (max_tokens or settings.ANSWER_TOKENS_RESERVED)
    current = max(e.turn for e in entries)
    total = sum(e.tokens() for e in entries)
    images_left_out = turns_left_out = 0
    earlier = [e for e in entries if 0 <= e.turn < current]
    for entry in earlier:  # the oldest images first
        while entry.images and total > budget:
            before = entry.tokens()
            entry.images.pop(0)
            entry.images_left_out += 1
            images_left_out += 1
            total += entry.tokens() - before
    for turn in sorted({e.turn for e in earlier}):  # then the oldest turns
        if total <= budget:
            break
        for entry in earlier:
            if entry.turn == turn:
                total -= entry.tokens()
                entry.turn = None
                turns_left_out += 1
    if total > budget:
        now = [e for e in entries if e.turn == current]
        images = sum(len(e.images) for e in now)
        if images:
            text_tokens = sum(e.tokens() for e in now) - settings.IMAGE_TOKEN_COST * images
            raise RequestTooLarge(
                gettext_noop(
                    "This message does not fit %(model)s's %(window)s window with room for the answer: its "
                    "%(images)s image counts about %(image_tokens)s tokens and its text about %(text_tokens)s. "
                    "Send fewer images or a shorter message.") if images == 1 else gettext_noop(
                    "This message does not fit %(model)s's %(window)s window with room for the answer: its "
                    "%(images)s images count about %(image_tokens)s tokens and its text about %(text_tokens)s. "
                    "Send fewer images or a shorter message."),
                {"model": model, "window": _window_name(window), "images": images,
                 "image_tokens": f"{settings.IMAGE_TOKEN_COST * images:,}", "text_tokens": f"{text_tokens:,}"},
            )
    notes = []
    if images_left_out:
        notes.append(sentence("images_left_out", count=images_left_out, model=model, window=window_sentence(window)))
    if turns_left_out:
        notes.append(sentence("messages_left_out", count=turns_left_out, model=model, window=window_sentence(window)))
    return notes


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    calls = message.get("tool_calls")
    return content + (str(calls) if calls else "")


def _window_name(window: int) -> str:
    return f"{window // 1024}K" if window % 1024 == 0 else f"{window:,}-token"


