"""An offline stand-in for the 01.AI Yi API, as a plain ASGI 3 application.

The test suite and the benchmarks talk to it over real HTTP, and the app falls back to
it when no YI_API_KEY is configured, so a person offline can still chat end to end.
That is why it lives in the app package yet imports nothing from Django:

    python -m yiweb.server -b 127.0.0.1 -p 8001 chat.simulator:app   (base URL http://127.0.0.1:8001/v1)
    python -m chat.simulator --host 127.0.0.1 --port 8001

It follows the upstream reference (GET /v1/models, POST /v1/chat/completions), quirks
included: every stream chunk also carries the whole answer so far in a top-level
`content`, and the last one says `lastOne: true`.

yi-vision answers from the pixels it is sent. Every `data:image/...;base64,` URL of the
history, earlier turns included, is decoded with chat.images (the one module that
imports Pillow) and described in order, e.g. "I see 2 images: image 1 is a JPEG,
640×480 pixels, mostly red, and it still carries EXIF metadata; image 2 is a PNG, 32×32
pixels, mostly blue." So a test can tell which picture reached the model, whether it was
turned upright and whether its metadata was stripped. Data that is not an image, or a
data URL naming another type than the image's own, is a 400, as are images sent to a
model that does not take them. Requests with images are read in a worker thread, so
decoding them does not hold up other streams. As in the reference's vision examples, a
yi-vision completion has no `id` or `object` and `created` is 0, and its stream's first
and last deltas are an empty `content` (the other models' carry the role, and nothing).

Faults are asked for per request, with no shared state, by a directive in the last user
message, e.g. `[sim deltas=5 interval=0 cut=3]`. See DIRECTIVE_DEFAULTS for the keys.

yi-large-fc calls tools as the reference describes, streamed as OpenAI streams them; when,
which and with what is decided from the request alone (`[sim-call NAME {...}]`
directives, tool_choice, the question): chat/simulator_tools.py.
Environment: SIMULATOR_API_KEY (accept only this key), SIMULATOR_DELTA_MS (pace),
SIMULATOR_RPM (past this many chat requests of one key in a minute, a 429 with
Retry-After, as a usage tier would; the minute is PACING_WINDOW_SECONDS long, which tests
shorten, as they do the app's).
"""

import asyncio
import base64
import binascii
import hashlib
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from chat.images import ImageDescription, ImageRefused, image_describe
from chat.simulator_tools import (
    ToolRequestRefused,
    call_directives_parse,
    tool_call_deltas,
    tool_calls_choose,
    tool_calls_message,
    tool_request_check,
    tool_results_text,
)

# Context windows from the reference's model table ("32K" read as 32 * 1024).
CONTEXT_WINDOWS = {
    "yi-large": 32 * 1024,
    "yi-large-turbo": 4 * 1024,
    "yi-large-fc": 32 * 1024,
    "yi-vision": 16 * 1024,
}
VISION_MODELS = {"yi-vision"}
MODEL_CREATED = 1708258504  # the reference's example timestamp
TOKENS_PER_IMAGE = 1000
DEFAULT_DELTA_MS = 20.0
# A body this small without images parses in well under a millisecond; a bigger one, or
# any with images (base64 and Pillow: tens of milliseconds for a photo), is read in a
# worker thread so that the event loop keeps every other stream's deltas on time.
PARSE_ON_LOOP_MAX = 64 * 1024
BASE64_SLICE = 1 << 20  # characters, a multiple of 4

# The media type a data URL should name for each format Pillow reads (others are
# image/<format>), the other names a data URL may use for it, and what a person calls it.
# Pillow reads a phone's multi-picture JPEG as MPO.
MEDIA_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png",
               "WEBP": "image/webp", "GIF": "image/gif", "HEIF": "image/heic"}
MEDIA_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg",
                 "image/heif": "image/heic"}
FORMAT_NAMES = {"MPO": "JPEG", "WEBP": "WebP", "HEIF": "HEIC"}

# The reference lists status codes and their meaning but never shows an error body, so
# errors use the OpenAI-like {"error": {"message", "type", "code"}} shape that the
# OpenAI SDK (which the reference recommends) already knows how to read.
ERRORS = {
    400: ("invalid_request_error", "Bad request: input format error."),
    401: ("authentication_error", "Authentication Error: API Key is missing or invalid."),
    404: ("not_found_error", "Not found: invalid Endpoint URL or model ID."),
    405: ("invalid_request_error", "Method not allowed."),
    429: ("rate_limit_error", "Too Many Requests: you are sending requests too quickly."),
    500: ("server_error", "Internal Server Error: the server had an error while "
          "processing your request."),
    529: ("overloaded_error", "System busy: our servers are experiencing high traffic."),
}

DIRECTIVE_RE = re.compile(r"\[sim(?=[\s\]])([^\]]*)\]")  # not [sim-call ...]: chat/simulator_tools.py
DIRECTIVE_DEFAULTS = {
    "deltas": None,      # int: answer is exactly N deltas "t0 ", "t1 ", ...
    "interval": None,    # float ms between deltas; None -> SIMULATOR_DELTA_MS or 20
    "status": None,      # int: answer with this HTTP error
    "retry_after": None,  # str: Retry-After header on that error
    "times": None,       # int: only the first K identical requests get the error
    "cut": None,         # int: end the body after N deltas, no finish chunk, no [DONE]
    "malformed": None,   # int: the N-th delta chunk (1-based) is invalid JSON
    "stall": None,       # int: after N deltas, go silent for stall_for seconds
    "stall_for": 3600.0,  # float seconds
    "accumulate": 1,     # 0: no top-level "content" in stream chunks
    "usage": 1,          # 0: no usage in the last chunk / the completion
    "stamp": 0,          # 1: delta i is "t{i}@{unix time it was sent, 6 decimals} "; 2: "t{i}:{...} ",
                         # which Markdown leaves as text (it links "t1@17….12" as an e-mail address)
    "tool_calls": 1,     # 0: under tool_choice "auto", answer in text (chat/simulator_tools.py)
    "tool_rounds": 1,    # int: rounds of tool calls under "auto" before the answer in text
    "broken": None,      # int: the K-th call of the first round has invalid JSON arguments
}
DIRECTIVE_TYPES = {"interval": float, "stall_for": float, "retry_after": str}

# Requests that asked for `times=K`, counted by sha256 of the raw body, so a client's
# retry of the very same request fails K times and then succeeds.
_failures: dict[str, int] = {}
_ids = 0
# One thread reads them, one request at a time. A burst read by several threads at once
# (asyncio.to_thread) took every core and kept taking the GIL from the event loop's
# thread, and other streams' deltas came late by far more than with one.
_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-reader")


class SimulatedError(Exception):
    def __init__(self, status: int, message: str | None = None, *,
                 type_: str | None = None, headers: list | None = None):
        default_type, default_message = ERRORS.get(
            status, ("api_error", f"Simulated error {status}."))
        super().__init__(message or default_message)
        self.status = status
        self.message = message or default_message
        self.type = type_ or default_type
        self.headers = headers or []


@dataclass
class ChatRequest:
    model: str
    messages: list
    stream: bool
    max_tokens: int | None
    tools: list
    tool_choice: object
    directives: dict
    question: str                                # last user text, directives removed
    images: list[ImageDescription] = field(default_factory=list)  # in order
    prompt_tokens: int = 0
    calls: list = field(default_factory=list)    # its [sim-call NAME {...}]: (name, arguments or None)


@dataclass
class Answer:
    pieces: list                 # text deltas, or the deltas of tool calls (dicts)
    finish_reason: str
    tool_calls: list | None = None  # [{"id", "name", "arguments"}] when the answer calls tools

    @property
    def text(self) -> str:
        return "" if self.tool_calls else "".join(self.pieces)


# ---------------------------------------------------------------- reading the request

def message_text(content) -> str:
    """The text of a message's content, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    return ""


def directives_parse(text: str) -> dict:
    found = dict(DIRECTIVE_DEFAULTS)
    for match in DIRECTIVE_RE.finditer(text):
        for word in match.group(1).split():
            key, sep, value = word.partition("=")
            if not sep or key not in DIRECTIVE_DEFAULTS:
                raise SimulatedError(400, f"Input format error: unknown simulator "
                                          f"directive {word!r}.")
            try:
                found[key] = DIRECTIVE_TYPES.get(key, int)(value)
            except ValueError:
                raise SimulatedError(400, f"Input format error: simulator directive "
                                          f"{word!r} needs a number.") from None
    return found


def image_decode(part: dict, number: int) -> ImageDescription:
    """What image `number` of the request is, read from the pixels of its image_url part;
    only data: URLs, as we are offline."""
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, dict) else url
    match = re.fullmatch(r"data:(image/[\w.+-]+);base64,(.*)", str(url or ""), re.DOTALL)
    if not match:
        raise SimulatedError(400, "Input format error: image_url must be a "
                                  "data:image/...;base64 URL.")
    try:
        data = base64_decode(match.group(2))
    except (binascii.Error, ValueError):
        raise SimulatedError(400, "Input format error: image data is not valid "
                                  "base64.") from None
    if not data:
        raise SimulatedError(400, "Input format error: image data is empty.")
    try:
        image = image_describe(data)
    except ImageRefused:
        raise SimulatedError(400, f"Input format error: image {number} cannot be decoded: "
                                  "its data is not an image.") from None
    declared = match.group(1).lower()
    actual = MEDIA_TYPES.get(image.format, f"image/{image.format.lower()}")
    if MEDIA_ALIASES.get(declared, declared) != actual:
        raise SimulatedError(
            400, f"Input format error: image {number} is sent as {match.group(1)}, but its "
                 f"data is {article(format_name(image))} {format_name(image)} image "
                 f"({actual}). The media type of a data URL must match the image.")
    return image


def base64_decode(text: str) -> bytes:
    """base64.b64decode(text, validate=True), a slice at a time: one call holds the GIL
    from start to end, and on a photo the event loop's thread would wait that long."""
    if text.find("=", 0, len(text) - 2) != -1:  # padding anywhere but at the end
        raise binascii.Error("Non-base64 digit found")
    return b"".join(base64.b64decode(text[i:i + BASE64_SLICE], validate=True)
                    for i in range(0, len(text), BASE64_SLICE))


def format_name(image: ImageDescription) -> str:
    return FORMAT_NAMES.get(image.format, image.format)


def article(word: str) -> str:
    return "an" if word[:1] in "AEIOU" else "a"


def request_parse(body: bytes) -> ChatRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise SimulatedError(400, "Input format error: the body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise SimulatedError(400, "Input format error: the body must be a JSON object.")
    model, messages = data.get("model"), data.get("messages")
    if not isinstance(model, str) or not model:
        raise SimulatedError(400, "Input format error: model is required.")
    if model != model.lower():
        raise SimulatedError(400, "Input format error: the model name must be all "
                                  f"lowercase, e.g. {model.lower()}.")
    if model not in CONTEXT_WINDOWS:
        raise SimulatedError(404, f"Not found: the model {model!r} does not exist.")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise SimulatedError(400, "Input format error: messages must be a non-empty "
                                  "list of objects with a role.")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise SimulatedError(400, "Input format error: max_tokens must be a positive "
                                  "integer or null.")
    for name, top in (("temperature", 2), ("top_p", 1)):
        value = data.get(name)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= top):
            raise SimulatedError(400, f"Input format error: {name} must be between "
                                      f"0 and {top}.")

    last_user = next((m for m in reversed(messages) if m["role"] == "user"), {})
    user_text = message_text(last_user.get("content"))
    try:
        tool_request_check(data.get("tools"), data.get("tool_choice"), messages)
        calls, user_text = call_directives_parse(user_text)
    except ToolRequestRefused as refused:
        raise SimulatedError(400, str(refused)) from None
    request = ChatRequest(
        model=model, messages=messages, stream=data.get("stream") is True,
        max_tokens=max_tokens, tools=data.get("tools") or [],
        tool_choice=data.get("tool_choice"), directives=directives_parse(user_text),
        question=" ".join(DIRECTIVE_RE.sub(" ", user_text).split()), calls=calls)
    prompt_inspect(request)
    return request


def prompt_inspect(request: ChatRequest) -> None:
    """Decode images, estimate prompt tokens, and enforce the model's context window."""
    characters = 0
    for message in request.messages:
        content = message.get("content")
        characters += len(message_text(content))
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                if request.model not in VISION_MODELS:
                    raise SimulatedError(400, f"Input format error: {request.model} does "
                                              "not accept images; use yi-vision.")
                request.images.append(image_decode(part, len(request.images) + 1))
    request.prompt_tokens = math.ceil(characters / 4) + TOKENS_PER_IMAGE * len(request.images)
    window = CONTEXT_WINDOWS[request.model]
    needed = request.prompt_tokens + (request.max_tokens or 0)
    if needed > window:
        raise SimulatedError(
            400, f"Bad request: context length exceeded. {request.model} has a maximum "
                 f"context window of {window} tokens, but this request needs {needed} "
                 f"({request.prompt_tokens} in the messages + {request.max_tokens or 0} "
                 "max_tokens). Reduce the inputs length, or set max_tokens to a smaller "
                 "value.", type_="context_length_exceeded")


def fault_check(directives: dict, body: bytes) -> None:
    """Raise the HTTP error a `status=` directive asks for, unless `times=` is used up."""
    status = directives["status"]
    if status is None:
        return
    if not 400 <= status <= 599:
        raise SimulatedError(400, "Input format error: simulator status must be 4xx or 5xx.")
    if directives["times"] is not None:
        key = hashlib.sha256(body).hexdigest()
        _failures[key] = _failures.get(key, 0) + 1
        if _failures[key] > directives["times"]:
            return
    headers = []
    if directives["retry_after"] is not None:
        headers.append((b"retry-after", directives["retry_after"].encode()))
    raise SimulatedError(status, headers=headers)


# ---------------------------------------------------------------- composing the answer

def text_split(text: str) -> list[str]:
    """Word-ish tokens with the whitespace before each word attached, like the real
    stream (" image"), so that joining the deltas gives back the exact text."""
    return re.findall(r"\s*\S+|\s+", text)


def default_text(request: ChatRequest) -> str:
    question = request.question
    if len(question) > 200:
        question = question[:200] + "…"
    asked = f"You asked: “{question}”" if question else "You sent an empty message."
    return (
        f"{asked}\n\n"
        "This answer comes from the **offline simulator**, a stand-in for the 01.AI "
        "Yi API that runs on this machine, so nothing left your computer. It can show:\n\n"
        "- streaming, one word at a time\n"
        "- *Markdown* formatting, with `inline code`\n"
        "- a fenced code block, like this one:\n\n"
        "```python\n"
        "def greet(name: str) -> str:\n"
        "    return f\"Hello, {name}!\"\n"
        "```\n\n"
        "To talk to the real Yi models, set `YI_API_KEY` in the environment "
        "and restart the server."
    )


def vision_sentence(images: list[ImageDescription]) -> str:
    """e.g. "I see 2 images: image 1 is a JPEG, 640×480 pixels, mostly red, and it still
    carries EXIF metadata; image 2 is a PNG, 32×32 pixels, mostly blue." """
    if not images:
        return "I see no images."
    described = []
    for number, image in enumerate(images, 1):
        name = format_name(image)
        text = (f"image {number} is {article(name)} {name}, {image.width}×{image.height} "
                f"pixels, mostly {image.colour}")
        if image.exif:
            text += ", and it still carries EXIF metadata"
        described.append(text)
    noun = "image" if len(images) == 1 else "images"
    return f"I see {len(images)} {noun}: {'; '.join(described)}."


# How yiweb asks for a conversation's title (chat/titles.py's TITLE_PROMPT begins so): a
# model would answer with a few words, so the stand-in does too.
TITLE_REQUEST = "Write a title for this conversation"


def title_asked(request: ChatRequest) -> bool:
    first = request.messages[0]
    return first["role"] == "system" and message_text(first.get("content")).startswith(TITLE_REQUEST)


def title_for(request: ChatRequest) -> str:
    """The question's first five words, as a model's title might be."""
    text = message_text(request.messages[-1].get("content")).removeprefix("Question:")
    words = DIRECTIVE_RE.sub(" ", call_directives_parse(text.split("\n\nAnswer:")[0])[1]).split()
    return "Simulated: " + " ".join(words[:5]) if words else "Simulated title"


def answer_compose(request: ChatRequest) -> Answer:
    calls = tool_calls_choose(request)
    if calls:
        return Answer(tool_call_deltas(calls), "tool_calls", calls)
    deltas = request.directives["deltas"]
    results = tool_results_text(request.messages, message_text)
    if title_asked(request):
        pieces = text_split(title_for(request))
    elif deltas is not None:
        pieces = [f"t{i} " for i in range(deltas)]
    elif results is not None:
        pieces = text_split(results)
    elif request.model in VISION_MODELS:
        pieces = text_split(vision_sentence(request.images) + "\n\n" + default_text(request))
    else:
        pieces = text_split(default_text(request))
    if request.max_tokens is not None and len(pieces) > request.max_tokens:
        return Answer(pieces[:request.max_tokens], "length")
    return Answer(pieces, "stop")


def new_id() -> str:
    global _ids
    _ids += 1
    return hashlib.sha256(f"{time.time_ns()}-{_ids}".encode()).hexdigest()[:8]


def delta_interval(directives: dict) -> float:
    """Seconds between deltas."""
    ms = directives["interval"]
    if ms is None:
        ms = float(os.environ.get("SIMULATOR_DELTA_MS") or DEFAULT_DELTA_MS)
    return max(ms, 0.0) / 1000


def piece_stamp(index: int, style: int = 1) -> str:
    """The text of delta `index` under `stamp=1`: it carries the moment it leaves, so a
    client on this machine can measure how late it arrived (bench/relay.py)."""
    return f"t{index}{'@' if style == 1 else ':'}{time.time():.6f} "


def usage_of(request: ChatRequest, answer: Answer) -> dict:
    completion = len(answer.pieces)
    return {"completion_tokens": completion, "prompt_tokens": request.prompt_tokens,
            "total_tokens": completion + request.prompt_tokens}


# ---------------------------------------------------------------- responses

# Compact, like the real stream, so a malformed chunk matches the reference byte for byte.
# One encoder for all: json.dumps with options builds a new one on every call, and a
# stream calls it twice per delta.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(obj) -> bytes:
    return _ENCODER.encode(obj).encode()


async def json_send(send, status: int, obj, headers: list | None = None) -> None:
    body = dumps(obj)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def error_send(send, error: SimulatedError) -> None:
    await json_send(send, error.status, {"error": {
        "message": error.message, "type": error.type, "code": error.status}},
        error.headers)


async def completion_send(send, request: ChatRequest, answer: Answer) -> None:
    """Non-stream: wait as long as streaming would take, then send one object."""
    d = request.directives
    await asyncio.sleep(delta_interval(d) * len(answer.pieces))
    if d["stall"] is not None:
        await asyncio.sleep(d["stall_for"])
    message = {"role": "assistant", "content": answer.text}
    if d["stamp"]:
        message["content"] = "".join(piece_stamp(i, d["stamp"]) for i in range(len(answer.pieces)))
    if answer.tool_calls:
        message["content"] = None
        message["tool_calls"] = tool_calls_message(answer.tool_calls)
    if request.model in VISION_MODELS:
        # As in the reference's vision example: no id, no object (the SDK shows both as
        # None) and "created": 0.
        completion = {"created": 0, "model": request.model}
    else:
        completion = {"id": "cmpl-" + new_id(), "object": "chat.completion",
                      "created": int(time.time()), "model": request.model}
    if d["usage"]:
        completion["usage"] = usage_of(request, answer)
    completion["choices"] = [{"index": 0, "message": message,
                              "finish_reason": answer.finish_reason}]
    if d["cut"] is None:
        await json_send(send, 200, completion)
        return
    # A body cut short: half the JSON, then the end of the response.
    body = dumps(completion)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body[:len(body) // 2]})


async def stream_send(send, request: ChatRequest, answer: Answer) -> None:
    d = request.directives
    interval = delta_interval(d)
    total = len(answer.pieces)
    # A cut or stall asked past the end happens just before the finish chunk.
    cut = None if d["cut"] is None else min(d["cut"], total)
    stall = None if d["stall"] is None else min(d["stall"], total)
    head = dumps({"id": "cmpl-" + new_id(), "object": "chat.completion.chunk",
                  "created": int(time.time()), "model": request.model})[:-1]

    def chunk(delta: dict, so_far: bytes, finish_reason: str | None = None) -> bytes:
        """One chunk, byte for byte what dumps() of the whole object gives. The answer so
        far arrives already encoded: JSON escapes character by character, so it grows by
        each piece's encoding instead of being encoded again, 500 times, per answer."""
        choice = {"delta": delta, "index": 0}
        if finish_reason:
            choice["finish_reason"] = finish_reason
        parts = [head, b',"choices":[', dumps(choice), b"]"]
        if d["accumulate"]:
            parts += [b',"content":"', so_far, b'"']
        if finish_reason and d["usage"]:
            parts += [b',"usage":', dumps(usage_of(request, answer))]
        parts.append(b',"lastOne":true}' if finish_reason is not None else b',"lastOne":false}')
        return b"".join(parts)

    async def event_send(payload: bytes) -> None:
        await send({"type": "http.response.body", "body": b"data: " + payload + b"\n\n",
                    "more_body": True})

    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache")]})
    # The reference's yi-vision stream opens and ends with an empty content delta where
    # yi-large's carry only the role and nothing at all.
    vision = request.model in VISION_MODELS
    await event_send(chunk({"content": ""} if vision else {"role": "assistant"}, b""))
    so_far = b""
    pace = Pace(interval)
    for sent in range(total + 1):
        if sent == cut:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if sent == stall:
            await asyncio.sleep(d["stall_for"])
            pace = Pace(interval)
        if sent == total:
            break
        await pace.next()
        if answer.tool_calls:
            delta = answer.pieces[sent]
        else:
            piece = piece_stamp(sent, d["stamp"]) if d["stamp"] else answer.pieces[sent]
            so_far += dumps(piece)[1:-1]
            delta = {"content": piece}
        payload = chunk(delta, so_far)
        if d["malformed"] == sent + 1:
            # The reference's own vision example has this defect: a stray "}" after
            # the delta object, e.g. {"delta":{"content":"The"}},"index":0}.
            marker = b'"delta":' + dumps(delta)
            payload = payload.replace(marker, marker + b"}", 1)
        await event_send(payload)
    await event_send(chunk({"content": ""} if vision else {}, so_far, answer.finish_reason))
    await event_send(b"[DONE]")
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class Pace:
    """Deltas `interval` seconds apart on a fixed schedule: a late one does not push back
    the rest (a model writes at its own pace, whoever reads), and none leaves early
    (uvloop's timers have millisecond resolution and may fire a little before time)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.due = time.monotonic()

    async def next(self) -> None:
        self.due += self.interval
        while (left := self.due - time.monotonic()) > 0:
            await asyncio.sleep(left)


# ---------------------------------------------------------------- the ASGI application

def auth_check(scope) -> str:
    """The request's key; a 401 for none, a wrong one, or one that starts with "invalid"."""
    headers = dict(scope.get("headers") or [])
    scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    key = key.strip()
    expected = os.environ.get("SIMULATOR_API_KEY")
    if (scheme.lower() != "bearer" or not key or key.startswith("invalid")
            or (expected and key != expected)):
        raise SimulatedError(401)
    return key


# Chat requests per key in the last minute, for SIMULATOR_RPM (the requests refused are
# not counted).
_requests_counted = MovingWindowRateLimiter(MemoryStorage())


def rate_check(key: str) -> None:
    """A 429 past SIMULATOR_RPM chat requests of `key` in PACING_WINDOW_SECONDS, whose
    Retry-After is the whole seconds until the oldest of them leaves the window."""
    rpm = int(os.environ.get("SIMULATOR_RPM") or 0)
    if rpm <= 0:
        return
    limit = RateLimitItemPerSecond(rpm, int(os.environ.get("PACING_WINDOW_SECONDS") or 60))
    if _requests_counted.hit(limit, key):
        return
    wait = _requests_counted.get_window_stats(limit, key).reset_time - time.time()
    # A line in the server's output, which tests count.
    print(f"simulator: 429, over SIMULATOR_RPM={rpm}", file=sys.stderr, flush=True)
    raise SimulatedError(429, headers=[(b"retry-after", str(max(math.ceil(wait), 1)).encode())])


async def body_read(receive) -> bytes | None:
    # Joined once at the end: Daphne hands the body over 8 KB at a time, and adding each
    # piece to the rest copies the whole body so far, for a 20 MB image 2,500 times.
    pieces = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        pieces.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(pieces)


async def request_read(body: bytes) -> ChatRequest:
    """request_parse, in the reader thread when the body is big or carries images."""
    if len(body) > PARSE_ON_LOOP_MAX or b'"image_url"' in body:
        return await asyncio.get_running_loop().run_in_executor(_reader, request_parse, body)
    return request_parse(body)


async def disconnect_wait(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def chat_respond(scope, receive, send) -> None:
    body = await body_read(receive)
    if body is None:
        return
    try:
        rate_check(auth_check(scope))
        request = await request_read(body)
        fault_check(request.directives, body)
        answer = answer_compose(request)
    except SimulatedError as error:
        await error_send(send, error)
        return
    respond = stream_send if request.stream else completion_send
    # Race the answer against the client leaving, so a stalled answer ends with the
    # connection instead of sleeping on for an hour.
    work = asyncio.ensure_future(respond(send, request, answer))
    leaving = asyncio.ensure_future(disconnect_wait(receive))
    await asyncio.wait({work, leaving}, return_when=asyncio.FIRST_COMPLETED)
    for task in (work, leaving):
        task.cancel()
    if work.done() and not work.cancelled() and work.exception():
        raise work.exception()


async def models_respond(scope, send) -> None:
    auth_check(scope)
    await json_send(send, 200, {"data": [
        {"id": name, "object": "model", "created": MODEL_CREATED, "ownedBy": "01.ai",
         "root": "", "parent": ""} for name in CONTEXT_WINDOWS], "object": "list"})


async def lifespan_handle(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan_handle(receive, send)
        return
    if scope["type"] != "http":
        return
    routes = {"/v1/models": "GET", "/v1/chat/completions": "POST"}
    path = scope["path"].rstrip("/")
    try:
        if path not in routes:
            raise SimulatedError(404)
        if scope["method"] != routes[path]:
            raise SimulatedError(405)
        if path == "/v1/models":
            await models_respond(scope, send)
        else:
            await chat_respond(scope, receive, send)
    except SimulatedError as error:
        await error_send(send, error)


def main(argv: list[str] | None = None) -> None:
    """`python -m chat.simulator --host 127.0.0.1 --port 8001`, served by Daphne on uvloop."""
    import argparse

    from yiweb import server

    parser = argparse.ArgumentParser(description="Offline stand-in for the Yi API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    server.main(["-b", args.host, "-p", str(args.port), "chat.simulator:app"])


if __name__ == "__main__":
    main()
