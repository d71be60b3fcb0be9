"""Writing the simulator's responses (chat/simulator.py): JSON bodies, the error body of a
SimulatedError, a whole completion, and a stream of SSE chunks as the reference sends
them (each also carries the whole answer so far in a top-level `content`, the last says
`lastOne: true`), the deltas paced on a fixed schedule.

The directives that shape them are honoured here (chat/simulator_directives.py):
interval, stamp, cut, stall, malformed, accumulate and usage. As in the reference's
vision examples, a yi-vision completion has no `id` or `object` and `created` is 0, and
its stream's first and last deltas are an empty `content` (the other models' carry the
role, and nothing).
"""

import asyncio
import hashlib
import json
import os
import time

from chat.simulator_answer import Answer
from chat.simulator_errors import SimulatedError
from chat.simulator_request import VISION_MODELS, ChatRequest
from chat.simulator_tools import tool_calls_message

DEFAULT_DELTA_MS = 20.0
_ids = 0


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
