"""A second provider for the suite: a small OpenAI-compatible API that is not the Yi simulator.

It answers as OpenAI's own API does, not as the Yi API (chat/simulator.py):
- `GET /v1/models` lists `{"id", "object": "model", "created", "owned_by"}` (snake case);
- stream chunks carry only `choices` (no top-level `content`, no `lastOne`), the first
  delta is the role, the last has `finish_reason` and an empty delta;
- usage is sent only when the request asks with `stream_options: {"include_usage": true}`,
  then in one more chunk whose `choices` is empty (and `"usage": null` in every chunk before
  it); `stream_options` on a request that does not stream is refused, as OpenAI refuses it;
- errors are `{"error": {"message", "type", "param", "code"}}`.

The answer is deterministic: "Echo: " and the last user message's text, a word a chunk.
Keys: any Bearer token that starts with "sk-" (else 401). A key may see models of its own,
as an organisation sees its fine-tuned models: `POST /control/models` with
`{"api_key", "id", "owned_by"}` adds one (test control, not an OpenAI endpoint), and
`GET /control/requests` returns the bodies of the chat requests received so far (refused
ones too).

    python -m yiweb.server -b 127.0.0.1 -p 8002 tests.openai_server:app   (base URL http://127.0.0.1:8002/v1)

Environment: OPENAI_SERVER_DELTA_MS (the pause between chunks, default 0);
OPENAI_SERVER_REFUSES (request fields refused as unrecognized, comma-separated, as an older
or stricter server refuses what it does not know, e.g. `stream_options`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator

MODELS = [
    {"id": "llama3.2", "object": "model", "created": 1727740800, "owned_by": "library"},
    {"id": "qwen2.5-coder", "object": "model", "created": 1731369600, "owned_by": "library"},
]
_key_models: dict[str, list[dict]] = {}
_requests: list[dict] = []
DELTA_SECONDS = float(os.environ.get("OPENAI_SERVER_DELTA_MS", "0")) / 1000
REFUSED_FIELDS = [name for name in os.environ.get("OPENAI_SERVER_REFUSES", "").split(",") if name]
_WORD = re.compile(r"\S+\s*")


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def models_of(key: str) -> list[dict]:
    return MODELS + _key_models.get(key, [])


def key_of(scope) -> str:
    headers = dict(scope["headers"])
    key = headers.get(b"authorization", b"").decode().removeprefix("Bearer ").strip()
    if not key.startswith("sk-"):
        # OpenAI shows the key's ends in this sentence; a client must not pass it on.
        shown = f"{key[:3]}****{key[-4:]}" if key else ""
        raise APIError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")
    return key


def text_of(content) -> str:
    if isinstance(content, list):
        parts = [part for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return " ".join(part.get("text", "") for part in parts)
    return content if isinstance(content, str) else ""


def request_check(key: str, body: bytes) -> dict:
    try:
        data = json.loads(body)
    except ValueError:
        raise APIError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(data, dict):
        raise APIError(400, "We could not parse the JSON body of your request.")
    _requests.append(data)  # refused or not
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise APIError(400, "Invalid 'messages': expected a non-empty array of message objects.", param="messages")
    if data.get("model") not in {m["id"] for m in models_of(key)}:
        raise APIError(404, f"The model `{data.get('model')}` does not exist or you do not have access to it.",
                       code="model_not_found")
    for name in REFUSED_FIELDS:
        if name in data:
            raise APIError(400, f"Unrecognized request argument supplied: {name}")
    if "stream_options" in data and data.get("stream") is not True:
        raise APIError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                       param="stream_options")
    return data


def answer_words(data: dict) -> tuple[list[str], dict]:
    """The answer a word a piece, and its usage (words stand in for tokens)."""
    last_user = next((m for m in reversed(data["messages"]) if m.get("role") == "user"), {})
    words = _WORD.findall("Echo: " + text_of(last_user.get("content")))
    prompt = sum(len(_WORD.findall(text_of(m.get("content")))) + 3 for m in data["messages"])
    usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
    return words, usage


def stream_chunks(data: dict, words: list[str], usage: dict) -> Iterator[dict]:
    include_usage = (data.get("stream_options") or {}).get("include_usage") is True
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": data["model"], "system_fingerprint": "fp_local"}

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "choices": [choice], **({"usage": None} if include_usage else {})}

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for word in words:
        yield chunk({"content": word})
    yield chunk({}, "stop")
    if include_usage:
        yield {**head, "choices": [], "usage": usage}


def _json(payload) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()  # compact, as OpenAI sends it


async def body_read(receive) -> bytes:
    pieces = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        pieces.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(pieces)


async def json_send(send, status: int, payload) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": _json(payload)})


async def chat_respond(scope, receive, send) -> None:
    key = key_of(scope)
    data = request_check(key, await body_read(receive))
    words, usage = answer_words(data)
    if data.get("stream") is not True:
        await json_send(send, 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": data["model"], "system_fingerprint": "fp_local",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        })
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]})
    for chunk in stream_chunks(data, words, usage):
        await send({"type": "http.response.body", "body": b"data: " + _json(chunk) + b"\n\n",
                    "more_body": True})
        if DELTA_SECONDS:
            await asyncio.sleep(DELTA_SECONDS)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def control_respond(scope, receive, send) -> None:
    if scope["method"] == "POST":
        added = json.loads(await body_read(receive))
        model = {"id": added["id"], "object": "model", "created": int(time.time()), "owned_by": added["owned_by"]}
        _key_models.setdefault(added["api_key"], []).append(model)
        await json_send(send, 200, model)
    else:
        await json_send(send, 200, _requests)


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"].rstrip("/"), scope["method"]
    try:
        if path == "/v1/models" and method == "GET":
            await json_send(send, 200, {"object": "list", "data": models_of(key_of(scope))})
        elif path == "/v1/chat/completions" and method == "POST":
            await chat_respond(scope, receive, send)
        elif path in ("/control/models", "/control/requests"):
            await control_respond(scope, receive, send)
        else:
            raise APIError(404, f"Invalid URL ({method} {path})")
    except APIError as error:
        await json_send(send, error.status, error.body)


@contextlib.contextmanager
def running_openai_server(env: dict | None = None) -> Iterator[str]:
    """Serve this app with Daphne on a free port; yield its base URL, http://127.0.0.1:PORT/v1."""
    import httpx

    from tests.simulator_server import running_daphne

    def answers(base: str) -> bool:
        try:
            return httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer sk-ready"}, timeout=1).is_success
        except httpx.HTTPError:
            return False

    with running_daphne("tests.openai_server:app", {**os.environ, **(env or {})}, answers) as (base, _):
        yield f"{base}/v1"
