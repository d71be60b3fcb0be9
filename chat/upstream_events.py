"""What the API sends, read as typed events: the stream decoder (`StreamDecoder`, fed the
body of a streamed answer as it arrives) and a non-stream reply's events (`reply_events`).

Quirks of the Yi API handled here (see the reference in shared/seed):
- every stream chunk repeats the whole answer so far in a top-level `content` field and
  carries `lastOne`; we read only `choices[0].delta` and keep `content` as a way to
  recover text lost to a malformed chunk;
- the first chunk may carry only `{"role": "assistant"}` or an empty content delta;
- the reference's own vision streaming example contains a chunk that is not valid JSON
  (an extra `}`): it is skipped and logged, and the stream goes on;
- usage arrives in the last chunk, next to the finish reason.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from chat.sentences import sentence
from chat.upstream_errors import StreamCutError, UpstreamError

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True)
class Finish:
    reason: str


@dataclass(frozen=True)
class Retrying:
    """Emitted before waiting to try again; only ever before the first delta."""

    attempt: int
    delay: float
    error: UpstreamError


Event = TextDelta | ToolCallDelta | Usage | Finish | Retrying


# `"choices"` as a key: an unescaped quote cannot occur inside a JSON string, so this
# only matches where a key starts (the Yi API sends it before the long `content`).
_CHOICES_KEY = re.compile(r'"choices"\s*:\s*')
_json_value = json.JSONDecoder().raw_decode
# A piece of text exactly as the Yi API sends it, free of escapes and of the control
# characters JSON does not allow raw (those go to the parser, as before). Matched only at
# the first "choices" key (see `StreamDecoder._plain_delta`).
_PLAIN_DELTA = re.compile(rb'"choices":\[\{"delta":\{"content":"([^"\\\x00-\x1f]*)"\},"index":0\}\]')


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Longer than any finish reason the reference or OpenAI names ("content_filter" is 14),
# and what the database keeps of one.
FINISH_REASON_MAX = 32


def _whole_number(value: Any) -> int | None:
    """`value` if it is a whole number a column can hold (a usage figure, a tool call's
    index); None for anything else (a string, a bool, a negative or fractional number)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def _storable(text: str) -> str:
    """The model's text without what cannot be stored: NUL characters (PostgreSQL refuses
    them; a page shows nothing for them) and halves of surrogate pairs (JSON can carry
    them; UTF-8 cannot), which become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _tool_call_deltas(calls: Any) -> list[ToolCallDelta]:
    """The tool-call deltas of a chunk, as OpenAI's format has them; what does not fit it
    (a call that is not an object, fields of other types) is dropped rather than failing
    the answer."""
    deltas = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):  # an object where a JSON string belongs
            arguments = json.dumps(arguments, ensure_ascii=False)
        deltas.append(
            ToolCallDelta(
                index=_call_index(call.get("index")),
                id=_text_field(call.get("id")),
                name=_text_field(function.get("name")),
                arguments=_text_field(arguments),
            )
        )
    return deltas


def _call_index(value: Any) -> int:
    """The index that keys the calls being merged: a whole number (or its digits), else 0."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return _whole_number(value) or 0


def _text_field(value: Any) -> str:
    return _storable(value) if isinstance(value, str) else ""


def reply_events(reply: Any) -> list[Event]:
    """The events of a non-stream reply (a chat.completion object), as a stream would have
    given them: its text, its tool calls, its usage and how it finished. Only
    `choices[0].message` and `usage` are relied on (the reference's vision replies lack
    `id` and `object`); a reply of another shape is an error with a sentence."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice else None
    if not isinstance(message, dict):
        raise UpstreamError(sentence("not_a_completion"))
    events: list[Event] = []
    if text := _text_field(message.get("content")):
        events.append(TextDelta(text))
    events += [
        ToolCallDelta(index=i, id=d.id, name=d.name, arguments=d.arguments)
        for i, d in enumerate(_tool_call_deltas(message.get("tool_calls")))
    ]
    usage = reply.get("usage")
    if isinstance(usage, dict):
        events.append(Usage(*(_whole_number(usage.get(key)) for key in USAGE_KEYS)))
    if choice.get("finish_reason"):
        events.append(Finish(reason=_storable(str(choice["finish_reason"]))[:FINISH_REASON_MAX]))
    return events


class StreamDecoder:
    """The events of a chat completion event stream, fed its body as it arrives.

    Plain synchronous code on purpose: at 50 streams of 500 tokens a second it runs
    25,000 times a second, and an async generator per line cost more than the parsing
    (docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose end has not arrived
        self.done = False  # `data: [DONE]` seen: nothing after it matters
        self.finished = False
        self.text_so_far: list[str] = []
        self.length = 0
        self.lost_text = False  # a malformed chunk was skipped; the next `content` field can repair it

    def feed(self, data: bytes) -> list[Event]:
        if self.pending:
            data = self.pending + data
        events: list[Event] = []
        start = 0
        # find() rather than split(): each line is copied once, when it is a data line.
        while (end := data.find(b"\n", start)) != -1:
            if data.startswith(b"data:", start) and not self.done:
                first, last = start + 5, end
                if data[first : first + 1] == b" ":  # SSE drops one space after the colon
                    first += 1
                if data[last - 1 : last] == b"\r":
                    last -= 1
                if not self._plain_delta(data, first, last, events):
                    self._data(data[first:last], events)
            start = end + 1
        self.pending = data[start:]
        return events

    def _plain_delta(self, data: bytes, first: int, last: int, events: list[Event]) -> bool:
        """The text of the data line `data[first:last]` if it is a piece of text exactly as
        the Yi API sends one, read without parsing the chunk; False for any other line,
        which `_data` then parses.

        Almost every chunk of a Yi answer is such a piece. Text with an escape in it
        (a quote, a backslash, a control character), a finish, tool calls, a role, or
        choices shaped any other way (OpenAI's) all fail the match. The Yi API sends usage
        only with the finish, so a plain piece carries none. A chunk of a 500-token
        answer took 5.7–5.8 µs of CPU parsed and takes 2.9–3.1 µs this way; a piece that
        needs an escape costs 0.6–0.9 µs more than before (`bench/decode.py`). At 50
        streams, 25,000 chunks a second, the relay's per-token p99 fell from 48–58 to
        36–37 ms on a slow day (docs/benchmarks.md)."""
        if self.lost_text:
            return False
        # Only at the first "choices", the one `_chunk_parse` would read: further on, the
        # shape can be inside the answer so far, which the Yi API does not always escape.
        key = data.find(b'"choices"', first, last)
        match = None if key == -1 else _PLAIN_DELTA.match(data, key, last)
        if match is None:
            return False
        try:
            piece = match[1].decode()
        except UnicodeDecodeError:
            return False
        self._piece(piece, events)
        return True

    def _piece(self, piece: str, events: list[Event]) -> None:
        if piece:
            self.text_so_far.append(piece)
            self.length += len(piece)
            events.append(TextDelta(piece))

    def close(self) -> list[Event]:
        """The body has ended: the events of an unterminated last line, or a cut stream."""
        events = self.feed(b"\n") if self.pending else []
        if self.done or self.finished:
            return events
        raise StreamCutError()

    def _data(self, payload: bytes, events: list[Event]) -> None:
        if payload == b"[DONE]":
            self.done = True
            if not self.finished:
                events.append(Finish(reason=""))
            return
        try:
            chunk, choice = self._chunk_parse(payload)
            delta = choice.get("delta") or {}
            piece = _storable(delta.get("content") or "")
        except (ValueError, AttributeError, IndexError, KeyError, TypeError):
            logger.warning("skipped a malformed stream chunk: %.200r", payload)
            self.lost_text = True
            return

        if self.lost_text:
            accumulated = chunk.get("content")
            if isinstance(accumulated, str) and _storable(accumulated).startswith("".join(self.text_so_far)):
                # The Yi API repeats the whole answer so far in every chunk: whatever the
                # skipped chunk carried is the difference.
                piece = _storable(accumulated)[self.length :]
                self.lost_text = False
        self._piece(piece, events)
        events.extend(_tool_call_deltas(delta.get("tool_calls")))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(Usage(*(_whole_number(usage.get(key)) for key in USAGE_KEYS)))
        if choice.get("finish_reason"):
            self.finished = True
            events.append(Finish(reason=_storable(str(choice["finish_reason"]))[:FINISH_REASON_MAX]))

    def _chunk_parse(self, payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """The chunk (only its `choices` where that is all a delta needs) and its first choice.

        Every Yi chunk repeats the whole answer so far, ~11 KB by the 500th token, and
        parsing it was most of the cost of a stream: an ordinary delta is read from
        `choices` alone. The whole chunk is parsed when its other fields matter: the
        finish (the Yi API sends usage with it), a chunk without choices (OpenAI's usage
        chunk), or text to recover."""
        text = payload.decode()
        key = None if self.lost_text else _CHOICES_KEY.search(text)
        choices_only = None
        if key is not None:
            choices = _json_value(text, key.end())[0]
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                choices_only = {"choices": choices}, choices[0]
                if not choices[0].get("finish_reason"):
                    return choices_only
        try:
            chunk = json.loads(text)
        except ValueError:
            if choices_only is None:
                raise
            # The answer so far, which the Yi API does not always escape, can make the
            # whole chunk invalid; its choices still say how the answer ended.
            return choices_only
        return chunk, (chunk.get("choices") or [{}])[0]
