"""An offline stand-in for the 01.AI Yi API, as a plain ASGI 3 application.

The test suite and the benchmarks talk to it over real HTTP, and the app falls back to
it when no YI_API_KEY is configured, so a person offline can still chat end to end.
That is why it lives in the app package yet imports nothing from Django:

    python -m yiweb.server -b 127.0.0.1 -p 8001 chat.simulator:app   (base URL http://127.0.0.1:8001/v1)
    python -m chat.simulator --host 127.0.0.1 --port 8001

It follows the upstream reference (GET /v1/models, POST /v1/chat/completions), quirks
included: every stream chunk also carries the whole answer so far in a top-level
`content`, and the last one says `lastOne: true`.

This module is its HTTP side: the routes, the key, the rate limit, reading the body
(requests with images in a worker thread, so decoding them does not hold up other
streams), and the answer raced against the client leaving. The rest, one concern a module:

- chat/simulator_request.py: the request checked, the models and their context windows.
- chat/simulator_directives.py: faults asked for per request, with no shared state, by a
  directive in the last user message, e.g. `[sim deltas=5 interval=0 cut=3]`; its
  DIRECTIVE_DEFAULTS lists the keys.
- chat/simulator_vision.py: yi-vision answers from the pixels it is sent, e.g. "I see 2
  images: image 1 is a JPEG, 640×480 pixels, mostly red, ..."; an image that is not what
  its data URL says, or sent to a model that does not take images, is a 400.
- chat/simulator_tools.py: yi-large-fc calls tools as the reference describes, streamed
  as OpenAI streams them; when, which and with what is decided from the request alone
  (`[sim-call NAME {...}]` directives, tool_choice, the question).
- chat/simulator_answer.py: what the answer says.
- chat/simulator_responses.py: the bytes sent: a completion, the SSE stream and its
  pace, stalls, cuts and malformed chunks, and the error bodies of chat/simulator_errors.py.

Environment: SIMULATOR_API_KEY (accept only this key), SIMULATOR_DELTA_MS (pace),
SIMULATOR_RPM (past this many chat requests of one key in a minute, a 429 with
Retry-After, as a usage tier would; the minute is PACING_WINDOW_SECONDS long, which tests
shorten, as they do the app's).
"""

import asyncio
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from chat.simulator_answer import answer_compose
from chat.simulator_directives import fault_check
from chat.simulator_errors import SimulatedError
from chat.simulator_request import CONTEXT_WINDOWS, ChatRequest, request_parse
from chat.simulator_responses import completion_send, error_send, json_send, stream_send

MODEL_CREATED = 1708258504  # the reference's example timestamp
# A body this small without images parses in well under a millisecond; a bigger one, or
# any with images (base64 and Pillow: tens of milliseconds for a photo), is read in a
# worker thread so that the event loop keeps every other stream's deltas on time.
PARSE_ON_LOOP_MAX = 64 * 1024
# One thread reads them, one request at a time. A burst read by several threads at once
# (asyncio.to_thread) took every core and kept taking the GIL from the event loop's
# thread, and other streams' deltas came late by far more than with one.
_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-reader")


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
