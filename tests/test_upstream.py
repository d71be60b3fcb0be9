"""The upstream client: SSE reading fed the reference's literal streams, and the simulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from chat import upstream, upstream_errors, upstream_events
from tests.simulator_server import canned_api
from chat.upstream import Credential, YiClient
from chat.upstream_errors import (
    AuthError,
    BadRequestError,
    ConnectionFailedError,
    ContextLengthError,
    NotFoundError,
    OverloadedError,
    RateLimitError,
    ServerError,
    StalledError,
    StreamCutError,
)
from chat.upstream_events import Finish, Retrying, TextDelta, ToolCallDelta, Usage

# The reference's streaming example for yi-large, line for line (its "..." line elides chunks).
REFERENCE_TEXT_STREAM = [
    'data: {"id":"cmpl78796a05","object":"chat.completion.chunk","created":7828777,"model":"yi-large","choices":[{"delta":{"role":"assistant"},"index":0}],"content":"","lastOne":false}',
    'data: {"id":"cmpl78796a05","object":"chat.completion.chunk","created":7828777,"model":"yi-large","choices":[{"delta":{"content":"Hello"},"index":0}],"content":"Hello","lastOne":false}',
    "...",
    'data: {"id":"cmpl78796a05","object":"chat.completion.chunk","created":7828777,"model":"yi-large","choices":[{"delta":{},"index":0,"finish_reason":"stop"}],"content":"Hello! My name is Yi.","usage":{"completion_tokens":64,"prompt_tokens":17,"total_tokens":81},"lastOne":true}',
    "data: [DONE]",
]

# The reference's yi-vision streaming example: its second and third chunks have an extra "}"
# (not JSON); its last chunk is shortened here (the reference's has unescaped quotes too).
REFERENCE_VISION_STREAM = [
    'data: {"id":"cmpl-39d99b40-b958-4a96-b3ea839bb1445c8e","object":"chat.completion.chunk","created":1710234117,"model":"yi-vision","choices":[{"delta":{"content":""},"index":0}],"content":"","lastOne":false}',
    'data: {"id":"cmpl-39d99b40-b958-4a96-b3ea839bb1445c8e","object":"chat.completion.chunk","created":1710234117,"model":"yi-vision","choices":[{"delta":{"content":"The"}},"index":0}],"content":"The","lastOne":false}',
    'data: {"id":"cmpl-39d99b40-b958-4a96-b3ea839bb1445c8e","object":"chat.completion.chunk","created":1710234117,"model":"yi-vision","choices":[{"delta":{"content":" image"}},"index":0}],"content":"The image","lastOne":false}',
    "...",
    'data: {"id":"cmpl-39d99b40-b958-4a96-b3ea839bb1445c8e","object":"chat.completion.chunk","created":1710234125,"model":"yi-vision","choices":[{"delta":{"content":""},"index":0,"finish_reason":"stop"}],"content":"The image is a table.","usage":{"completion_tokens":120,"prompt_tokens":19,"total_tokens":139},"lastOne":true}',
    "data: [DONE]",
]


def events_of(lines: list[str], piece: int) -> list:
    """Feed a stream's body to a decoder `piece` bytes at a time, as a network may split it
    (mid-line and mid-character included), the way the client does."""
    body = "".join(f"{line}\n\n" for line in lines).encode()
    decoder = upstream_events.StreamDecoder()
    events = []
    for start in range(0, len(body), piece):
        events += decoder.feed(body[start : start + piece])
        if decoder.done:
            break
    return events + decoder.close()


# Whole, split every few bytes, and one byte at a time.
PIECES = pytest.mark.parametrize("piece", [1_000_000, 7, 1])


@PIECES
def test_reference_text_stream_gives_text_usage_and_finish(piece):
    assert events_of(REFERENCE_TEXT_STREAM, piece) == [
        TextDelta("Hello"),
        Usage(prompt_tokens=17, completion_tokens=64, total_tokens=81),
        Finish("stop"),
    ]


def test_top_level_content_field_is_not_forwarded_as_text():
    events = events_of(REFERENCE_TEXT_STREAM, 1_000_000)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Hello"  # not "Hello! My name is Yi." from the last chunk's accumulated field


@PIECES
def test_malformed_chunks_are_skipped_and_their_text_recovered_from_accumulated_content(piece):
    assert events_of(REFERENCE_VISION_STREAM, piece) == [
        TextDelta("The image is a table."),
        Usage(prompt_tokens=19, completion_tokens=120, total_tokens=139),
        Finish("stop"),
    ]


def test_malformed_chunk_without_a_later_accumulated_field_is_skipped_and_streaming_goes_on():
    lines = [
        'data: {"choices":[{"delta":{"content":"A"},"index":0}]}',
        'data: {"choices":[{"delta":{"content":"B"}},"index":0}]}',
        'data: {"choices":[{"delta":{"content":"C"},"index":0,"finish_reason":"stop"}]}',
        "data: [DONE]",
    ]
    assert events_of(lines, 1_000_000) == [TextDelta("A"), TextDelta("C"), Finish("stop")]


@PIECES
def test_text_with_quotes_braces_and_non_ascii_comes_through_exactly(piece):
    # Spaced JSON as some OpenAI-compatible servers send it, keys in another order, and
    # text that looks like the keys the reader looks for.
    pieces = ['说 "choices": [1]', ' {"usage":', " \\ ", "🙂 end"]
    lines = [
        "data: " + json.dumps({"content": "".join(pieces[:i]), "choices": [{"delta": {"content": p}, "index": 0}]})
        for i, p in enumerate(pieces)
    ]
    lines.append('data: {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"total_tokens": 9}}')
    assert events_of(lines, piece) == [
        *(TextDelta(p) for p in pieces),
        Usage(prompt_tokens=None, completion_tokens=None, total_tokens=9),
        Finish("stop"),
    ]


@PIECES
def test_pieces_in_the_yi_api_shape_come_through_exactly_whatever_they_hold(piece):
    # Compact chunks as the reference shows them: those whose text needs no escape are read
    # without parsing the chunk, the others are parsed; both must give the exact text.
    pieces = ["plain", " é 说 🙂", 'a "quoted" word', "back\\slash", "tab\there", "nul\x00gone", "", "end"]
    pieces.append('"choices":[{"delta":{"content":"x"},"index":0}]')  # text that looks like the shape

    def chunk(choice: dict, so_far: str) -> str:
        fields = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "yi-large",
                  "choices": [choice], "content": so_far, "lastOne": False}
        return "data: " + json.dumps(fields, ensure_ascii=False, separators=(",", ":"))

    lines = [chunk({"delta": {"content": p}, "index": 0}, "".join(pieces[: i + 1])) for i, p in enumerate(pieces)]
    lines += [chunk({"delta": {}, "index": 0, "finish_reason": "stop"}, "".join(pieces)), "data: [DONE]"]
    assert events_of(lines, piece) == [
        *(TextDelta(p.replace("\x00", "")) for p in pieces if p),
        Finish("stop"),
    ]


@PIECES
def test_the_shape_of_a_piece_inside_the_unescaped_answer_so_far_is_not_read_as_a_piece(piece):
    # The reference's own last vision chunk has raw quotes in its top-level `content`: an
    # answer that quotes the stream format then holds the exact shape of a piece there.
    shape = '"choices":[{"delta":{"content":"x"},"index":0}]'
    head = 'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"yi-large",'
    lines = [
        head + '"choices":[{"delta":{"content":"Example: "},"index":0}],"content":"Example: ","lastOne":false}',
        head + '"choices":[{"delta":{"content":' + json.dumps(shape) + '},"index":0}],'
        '"content":"Example: ' + shape + '","lastOne":false}',
        head + '"choices":[{"delta":{"content":"\\n"},"index":0}],"content":"Example: ' + shape + '\\n"}',
        head + '"choices":[{"delta":{},"index":0,"finish_reason":"stop"}],"content":"Example: ' + shape + '",'
        '"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}',
        "data: [DONE]",
    ]
    # The finish chunk is then not valid JSON: its finish reason is still read, its usage lost.
    assert events_of(lines, piece) == [TextDelta("Example: "), TextDelta(shape), TextDelta("\n"), Finish("stop")]


def test_a_chunk_whose_choices_is_not_a_list_is_skipped():
    lines = ['data: {"choices":{"a":1}}', 'data: {"choices":[{"delta":{"content":"B"},"index":0}]}', "data: [DONE]"]
    assert events_of(lines, 7) == [TextDelta("B"), Finish("")]


def test_usage_in_a_chunk_of_its_own_after_the_finish_is_kept():
    # OpenAI's stream_options.include_usage: a last chunk with empty choices.
    lines = [
        'data: {"choices":[{"delta":{"content":"Hi"},"index":0,"finish_reason":"stop"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}',
        "data: [DONE]",
    ]
    assert events_of(lines, 5) == [TextDelta("Hi"), Finish("stop"), Usage(3, 1, 4)]


def test_usage_and_finish_reason_that_no_column_could_hold_are_not_passed_on():
    # Passed on, these failed the answer's ending: a negative count breaks the column's
    # CHECK (IntegrityError), a string is no integer (ValueError), a 40-character reason
    # does not fit PostgreSQL's column. A fraction is no token count either.
    lines = [
        'data: {"choices":[{"delta":{"content":"Hi"},"index":0,"finish_reason":"' + "x" * 40 + '"}],'
        '"usage":{"prompt_tokens":-1,"completion_tokens":"many","total_tokens":2.5}}',
        'data: {"choices":[],"usage":{"prompt_tokens":true,"completion_tokens":null,"total_tokens":3}}',
        "data: [DONE]",
    ]
    assert events_of(lines, 7) == [TextDelta("Hi"), Usage(None, None, None), Finish("x" * 32), Usage(None, None, 3)]


def test_a_finish_reason_that_is_not_a_string_still_ends_the_answer():
    assert events_of(['data: {"choices":[{"delta":{},"index":0,"finish_reason":7}]}'], 7) == [Finish("7")]


def test_tool_call_fields_of_other_types_are_read_as_far_as_they_make_sense():
    # Each of these once raised out of the decoder and ended the answer as `internal`, or
    # (a string index beside whole ones) made sorting the calls fail at the ending.
    lines = [
        'data: {"choices":[{"delta":{"tool_calls":[{"index":"1","id":7,'
        '"function":{"name":"get_time","arguments":{"zone":"UTC"}}}]}}]}',
        'data: {"choices":[{"delta":{"tool_calls":[1,{"index":true,"function":"f"}]}}]}',
        'data: {"choices":[{"delta":{"tool_calls":{"index":0}}}]}',
        'data: {"choices":[{"delta":{},"finish_reason":"tool_calls"}]}',
    ]
    assert events_of(lines, 7) == [
        ToolCallDelta(index=1, id="", name="get_time", arguments='{"zone": "UTC"}'),
        ToolCallDelta(index=0),
        Finish("tool_calls"),
    ]


def test_stream_ending_without_finish_or_done_is_a_cut_stream():
    with pytest.raises(StreamCutError, match="closed mid-answer"):
        events_of(REFERENCE_TEXT_STREAM[:2], 7)


def test_done_without_finish_reason_completes():
    assert events_of([REFERENCE_TEXT_STREAM[1], "data: [DONE]"], 7) == [TextDelta("Hello"), Finish("")]


def test_events_after_done_are_ignored():
    lines = [REFERENCE_TEXT_STREAM[1], "data: [DONE]", REFERENCE_TEXT_STREAM[1]]
    decoder = upstream_events.StreamDecoder()
    body = "".join(f"{line}\n\n" for line in lines).encode()
    assert decoder.feed(body) + decoder.close() == [TextDelta("Hello"), Finish("")]


async def collect(aiter):
    return [event async for event in aiter]


@pytest.fixture(autouse=True)
async def pool_closed():
    """Each test has its own event loop: close the connections opened on it."""
    yield
    await upstream.pool_close()


# --- over HTTP, against the simulator ---------------------------------------------------


def client_for(url: str, **kwargs) -> YiClient:
    defaults = {"max_retries": 2, "retry_base": 0.01, "retry_max": 5.0, "stall_timeout": 5.0}
    return YiClient(credential=Credential(base_url=url, api_key="sk-test", yi=True), **{**defaults, **kwargs})


def ask(text: str, model: str = "yi-large") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def test_list_models_returns_the_reference_models(simulator_url):
    models = await client_for(simulator_url).list_models()
    assert [m["id"] for m in models] == ["yi-large", "yi-large-turbo", "yi-large-fc", "yi-vision"]
    assert models[0]["ownedBy"] == "01.ai"


async def test_non_streaming_completion_returns_the_chat_completion_object(simulator_url):
    completion = await client_for(simulator_url).complete(ask("[sim deltas=3]"))
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "t0 t1 t2 "}
    assert completion["usage"]["completion_tokens"] == 3


async def test_stream_yields_every_delta_in_order_then_usage_and_finish(simulator_url):
    events = await collect(client_for(simulator_url).stream(ask("[sim deltas=50 interval=0]")))
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert texts == [f"t{i} " for i in range(50)]
    assert events[-2:] == [Usage(prompt_tokens=events[-2].prompt_tokens, completion_tokens=50,
                                 total_tokens=events[-2].prompt_tokens + 50), Finish("stop")]


async def test_stream_recovers_text_of_a_malformed_chunk(simulator_url):
    events = await collect(client_for(simulator_url).stream(ask("[sim deltas=6 interval=0 malformed=3]")))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "t0 t1 t2 t3 t4 t5 "


async def test_tool_call_deltas_are_typed_events(simulator_url):
    body = ask("What is the MoM change?", model="yi-large-fc")
    body["tools"] = [{"type": "function", "function": {"name": "calculator", "parameters": {
        "type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}}}]
    events = await collect(client_for(simulator_url).stream(body))
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "calculator" and calls[0].id
    assert "".join(c.arguments for c in calls) == '{"time": "1"}'
    assert events[-1] == Finish("tool_calls")


ERROR_CASES = [
    ("[sim status=401]", AuthError, "The Yi API rejected the server's API key (401): it is missing, wrong or "
     "disabled. Add a key of your own on the Keys page, or ask the administrator to check the server's key."),
    ("[sim status=404]", NotFoundError, "The Yi API does not know the model “yi-large” or the endpoint (404). "
     "Pick another model, or ask the administrator to check that the server's base URL ends in /v1."),
    ("[sim status=429]", RateLimitError, "The Yi API is rate-limiting the server's API key (429): too many requests "
     "or tokens per minute. Wait a minute and try again, or move to a higher usage tier."),
    ("[sim status=500]", ServerError, "The Yi API had an internal error (500). Try again in a moment; if it keeps "
     "happening, the service may be down."),
    ("[sim status=529]", OverloadedError, "The Yi API is overloaded right now (529: system busy). Try again in a moment."),
]


@pytest.mark.parametrize(("text", "error_class", "message"), ERROR_CASES)
async def test_error_status_becomes_a_typed_error_with_a_sentence(simulator_url, text, error_class, message):
    with pytest.raises(error_class) as caught:
        await collect(client_for(simulator_url, max_retries=0).stream(ask(text)))
    assert caught.value.message == message


async def test_400_for_context_length_is_told_apart_from_a_format_error(simulator_url):
    with pytest.raises(ContextLengthError, match="too long for the model's context window"):
        await collect(client_for(simulator_url).stream(ask("x" * 20000, model="yi-large-turbo")))
    with pytest.raises(BadRequestError, match="all lowercase") as caught:
        await collect(client_for(simulator_url).stream(ask("hi", model="Yi-Large")))
    assert not isinstance(caught.value, ContextLengthError)


async def test_wrong_key_is_an_auth_error(simulator_url):
    client = YiClient(credential=Credential(base_url=simulator_url, api_key="invalid-key"))
    with pytest.raises(AuthError):
        await client.list_models()


async def test_retryable_errors_are_retried_before_the_first_delta_and_announced(simulator_url):
    events = await collect(client_for(simulator_url).stream(ask("[sim status=529 times=2 deltas=2 interval=0]")))
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [r.attempt for r in retries] == [1, 2]
    assert all(isinstance(r.error, OverloadedError) for r in retries)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["t0 ", "t1 "]


async def test_retry_after_header_sets_the_wait(simulator_url):
    started = time.monotonic()
    events = await collect(client_for(simulator_url).stream(ask("[sim status=429 times=1 retry_after=0.3 deltas=1]")))
    assert [e.delay for e in events if isinstance(e, Retrying)] == [0.3]
    assert time.monotonic() - started >= 0.3


async def test_retries_give_up_after_the_limit(simulator_url):
    with pytest.raises(ServerError):
        await collect(client_for(simulator_url, max_retries=1).stream(ask("[sim status=500 times=5]")))


async def test_retry_after_longer_than_the_cap_is_not_waited_for(simulator_url):
    with pytest.raises(RateLimitError):
        await collect(client_for(simulator_url, retry_max=1).stream(ask("[sim status=429 retry_after=60 times=1]")))


async def test_cut_stream_after_first_delta_is_not_retried(simulator_url):
    events = []
    with pytest.raises(StreamCutError, match="closed mid-answer"):
        async for event in client_for(simulator_url).stream(ask("[sim deltas=10 cut=3 interval=0]")):
            events.append(event)
    assert events == [TextDelta("t0 "), TextDelta("t1 "), TextDelta("t2 ")]


async def test_stalled_stream_is_given_up_after_the_stall_timeout(simulator_url):
    events = []
    with pytest.raises(StalledError, match="sent nothing for 0.5 seconds"):
        async for event in client_for(simulator_url, stall_timeout=0.5).stream(ask("[sim deltas=5 stall=2 interval=0]")):
            events.append(event)
    assert events == [TextDelta("t0 "), TextDelta("t1 ")]


async def test_a_slow_stream_that_never_goes_quiet_for_the_stall_timeout_is_read_to_the_end(simulator_url):
    # 1.5 s of answer, a token every 0.3 s, against a stall timeout of 0.5 s.
    events = await collect(client_for(simulator_url, stall_timeout=0.5).stream(ask("[sim deltas=5 interval=300]")))
    assert [e.text for e in events if isinstance(e, TextDelta)] == [f"t{i} " for i in range(5)]
    assert events[-1] == Finish("stop")


@pytest.mark.parametrize("slow_on", [1, 41])  # the first delta; an event of the last chunk, all arrived
async def test_a_caller_slow_over_an_event_is_not_taken_for_a_stalled_api(simulator_url, slow_on):
    # The API sends 40 deltas in 0.4 s; the caller takes 1 s over one event, twice the stall timeout.
    events = []
    async for event in client_for(simulator_url, stall_timeout=0.5).stream(ask("[sim deltas=40 interval=10]")):
        events.append(event)
        if len(events) == slow_on:
            await asyncio.sleep(1.0)
    assert [e.text for e in events if isinstance(e, TextDelta)] == [f"t{i} " for i in range(40)]
    assert events[-1] == Finish("stop")


async def test_an_api_that_takes_the_request_but_never_answers_times_out():
    async def silent(reader, writer):
        await reader.read(65536)  # the request; then nothing, until the client gives up
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(upstream_errors.TimeoutError_, match="did not answer in time"):
            await collect(client_for(f"http://127.0.0.1:{port}/v1", stall_timeout=0.3, max_retries=0).stream(ask("hi")))
    finally:
        server.close()
    assert 0.3 <= time.monotonic() - started < 2


async def test_refused_connection_is_retried_then_reported():
    from chat.sentences import said
    from tests.test_consumer import closed_port

    port = closed_port()
    client = client_for(f"http://127.0.0.1:{port}/v1", max_retries=1)
    events = []
    # httpx-aiohttp calls it a ConnectTimeout; it was refused, at once.
    with pytest.raises(ConnectionFailedError) as raised:
        async for event in client.stream(ask("hi")):
            events.append(event)
    assert raised.value.message == (
        f"The Yi API at 127.0.0.1:{port} refused the connection. Check the key's base URL and that the service is "
        "running, then try again.")
    assert said(raised.value.sentence, "zh-hans") == (
        f"127.0.0.1:{port} 上的 Yi API 拒绝了连接。请检查密钥的 Base URL 以及服务是否在运行，然后重试。")
    assert len(events) == 1 and isinstance(events[0], Retrying)
    assert said(events[0].error.retry_reason, "zh-hans") == f"127.0.0.1:{port} 上的 Yi API 拒绝了连接"


async def test_a_host_that_does_not_resolve_is_said_so():
    # .invalid never resolves (RFC 2606).
    client = client_for("http://no-such-host.invalid/v1", max_retries=0)
    with pytest.raises(ConnectionFailedError) as raised:
        await collect(client.stream(ask("hi")))
    assert raised.value.message.startswith(
        "Could not find the Yi API at no-such-host.invalid: the name does not resolve.")


def test_the_proxy_comes_from_the_environment_and_no_proxy_is_honoured(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert upstream.proxy_for("https://api.lingyiwanwu.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    assert upstream.proxy_for("https://api.lingyiwanwu.com/v1") == "http://proxy.internal:3128"
    assert upstream.proxy_for("http://api.lingyiwanwu.com/v1") is None  # no HTTP_PROXY set
    assert upstream.proxy_for("https://llm.corp.example/v1") is None


async def test_a_gzip_compressed_stream_is_read_as_its_text():
    """An API (or a proxy) may compress the event stream; the events are the same."""
    import gzip

    lines = [line for line in REFERENCE_TEXT_STREAM if line != "..."]
    body = gzip.compress("".join(f"{line}\n\n" for line in lines).encode())

    async with canned_api(body, {"Content-Encoding": "gzip"}) as url:
        try:
            events = [e async for e in client_for(url).stream(ask("hi"))]
        finally:
            await upstream.pool_close()
    assert events == [TextDelta("Hello"), Usage(17, 64, 81), Finish(reason="stop")]


def test_characters_that_cannot_be_stored_are_dropped_from_the_model_output():
    """A NUL (PostgreSQL refuses it) or half a surrogate pair (JSON can carry one) in a
    delta would make the answer impossible to store."""
    chunk = {"choices": [{"delta": {"content": "a\u0000b\ud800c"}, "index": 0}]}
    events = upstream_events.StreamDecoder().feed(f"data: {json.dumps(chunk)}\n\n".encode())
    assert events == [TextDelta("ab\ufffdc")]


def test_a_non_stream_reply_reads_as_the_events_a_stream_would_give():
    from chat.upstream_errors import UpstreamError
    from chat.upstream_events import reply_events

    reply = {"choices": [{"message": {"role": "assistant", "content": "Hi\x00!", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": {"expression": "1+1"}}}]},
        "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": True, "total_tokens": 5}}
    assert reply_events(reply) == [
        TextDelta("Hi!"),
        ToolCallDelta(index=0, id="call_1", name="calculator", arguments='{"expression": "1+1"}'),
        Usage(3, None, 5),
        Finish("tool_calls"),
    ]
    for wrong in ({}, {"choices": []}, {"choices": ["x"]}, [], {"choices": [{"message": "text"}]}):
        with pytest.raises(UpstreamError, match="not with a chat completion"):
            reply_events(wrong)
