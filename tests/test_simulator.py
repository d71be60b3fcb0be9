"""The offline Yi API simulator, exercised over real HTTP against a Daphne subprocess."""

import json
import re
import time
import uuid

import httpx
import pytest

from tests.simulator_server import running_simulator

KEY = "sk-test"
CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "YoY and MoM data calculator.",
        "parameters": {
            "type": "object",
            "properties": {
                "time": {"type": "string"},
                "type": {"type": "string", "enum": ["YoY", "MoM"]},
                "note": {"type": "string"},
            },
            "required": ["time", "type"],
        },
    },
}


@pytest.fixture(scope="module")
def simulator():
    with running_simulator({"SIMULATOR_DELTA_MS": "0"}) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def configured_simulator():
    env = {"SIMULATOR_API_KEY": "sk-the-only-one", "SIMULATOR_DELTA_MS": "40"}
    with running_simulator(env) as base_url:
        yield base_url


@pytest.fixture
def client(simulator):
    with httpx.Client(base_url=simulator, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=10) as client:
        yield client


def user_turn(text: str) -> list:
    return [{"role": "user", "content": text}]


def body(text: str, model: str = "yi-large", **fields) -> dict:
    return {"model": model, "messages": user_turn(text), **fields}


def data_lines(raw: str) -> list[str]:
    """The payloads of the `data:` events, exactly as sent."""
    return [event.removeprefix("data: ") for event in raw.split("\n\n") if event]


def stream(client: httpx.Client, payload: dict) -> list[str]:
    response = client.post("/chat/completions", json={**payload, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return data_lines(response.text)


def stream_chunks(client: httpx.Client, payload: dict) -> list[dict]:
    lines = stream(client, payload)
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def arrival_times(client: httpx.Client, payload: dict) -> list[float]:
    """When each `data:` event reached the client, in seconds from the request."""
    start, times = time.monotonic(), []
    with client.stream("POST", "/chat/completions", json={**payload, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                times.append(time.monotonic() - start)
    return times


def error_body(status: int, message: str, type_: str) -> dict:
    return {"error": {"message": message, "type": type_, "code": status}}


# ---------------------------------------------------------------- shapes

def test_models_lists_the_four_models_in_the_reference_shape(client):
    response = client.get("/models")

    assert response.status_code == 200
    assert response.json() == {"data": [
        {"id": name, "object": "model", "created": 1708258504, "ownedBy": "01.ai",
         "root": "", "parent": ""}
        for name in ("yi-large", "yi-large-turbo", "yi-large-fc", "yi-vision")],
        "object": "list"}


def test_completion_has_the_reference_shape(client):
    response = client.post("/chat/completions", json=body("Hi [sim deltas=3]"))

    completion = response.json()
    assert response.status_code == 200
    assert completion["id"].startswith("cmpl-") and len(completion["id"]) == 13
    assert isinstance(completion.pop("created"), int)
    completion.pop("id")
    assert completion == {
        "object": "chat.completion", "model": "yi-large",
        "usage": {"completion_tokens": 3, "prompt_tokens": 5, "total_tokens": 8},
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "t0 t1 t2 "},
                     "finish_reason": "stop"}]}


def test_stream_first_chunk_carries_only_the_role(client):
    first = stream_chunks(client, body("Hi [sim deltas=2]"))[0]

    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [{"delta": {"role": "assistant"}, "index": 0}]
    assert first["content"] == "" and first["lastOne"] is False


def test_stream_top_level_content_is_the_whole_answer_so_far(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=3]"))[1:-1]

    assert [c["choices"] for c in chunks] == [
        [{"delta": {"content": f"t{i} "}, "index": 0}] for i in range(3)]
    assert [c["content"] for c in chunks] == ["t0 ", "t0 t1 ", "t0 t1 t2 "]
    assert {c["lastOne"] for c in chunks} == {False}


def test_stream_last_chunk_has_finish_usage_and_last_one_then_done(client):
    lines = stream(client, body("Hi [sim deltas=3]"))
    last = json.loads(lines[-2])

    assert lines[-1] == "[DONE]"
    assert last["choices"] == [{"delta": {}, "index": 0, "finish_reason": "stop"}]
    assert last["content"] == "t0 t1 t2 "
    assert last["usage"] == {"completion_tokens": 3, "prompt_tokens": 5, "total_tokens": 8}
    assert last["lastOne"] is True


def test_stream_chunks_share_one_id(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=2]"))

    assert len({c["id"] for c in chunks}) == 1


def test_default_answer_echoes_the_question_without_the_directive(client):
    chunks = stream_chunks(client, body("What is Yi? [sim interval=0]"))
    answer = chunks[-1]["content"]

    assert answer.startswith("You asked: “What is Yi?”\n\n")
    assert "[sim" not in answer
    assert "\n- " in answer and "```python\n" in answer and "YI_API_KEY" in answer
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == answer


def test_max_tokens_stops_the_answer_with_finish_reason_length(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=10]", max_tokens=4))

    assert chunks[-1]["content"] == "t0 t1 t2 t3 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


# ---------------------------------------------------------------- directives

def test_deltas_directive_gives_exactly_n_numbered_deltas(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=7]"))

    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]] == [
        f"t{i} " for i in range(7)]


def test_interval_directive_paces_the_deltas(client):
    times = arrival_times(client, body("Hi [sim deltas=4 interval=100]"))

    # Times from the request, not gaps: a late chunk cannot make a later one early.
    assert len(times) == 7  # role, 4 deltas, finish, [DONE]
    assert times[4] >= 0.4


@pytest.mark.parametrize("status, message, type_", [
    (400, "Bad request: input format error.", "invalid_request_error"),
    (401, "Authentication Error: API Key is missing or invalid.", "authentication_error"),
    (404, "Not found: invalid Endpoint URL or model ID.", "not_found_error"),
    (429, "Too Many Requests: you are sending requests too quickly.", "rate_limit_error"),
    (500, "Internal Server Error: the server had an error while processing your request.",
     "server_error"),
    (529, "System busy: our servers are experiencing high traffic.", "overloaded_error"),
    (503, "Simulated error 503.", "api_error"),
])
def test_status_directive_answers_with_that_error_and_body(client, status, message, type_):
    response = client.post("/chat/completions", json=body(f"Hi [sim status={status}]"))

    assert response.status_code == status
    assert response.json() == error_body(status, message, type_)
    assert "retry-after" not in response.headers


def test_status_directive_also_fails_a_stream_request(client):
    response = client.post("/chat/completions",
                           json=body("Hi [sim status=529]", stream=True))

    assert response.status_code == 529
    assert response.headers["content-type"] == "application/json"


def test_retry_after_directive_sets_the_header(client):
    response = client.post("/chat/completions",
                           json=body("Hi [sim status=429 retry_after=2]"))

    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"


def test_times_directive_fails_only_the_first_k_identical_requests(client):
    payload = body(f"Hi {uuid.uuid4()} [sim status=500 times=2 deltas=1]")

    statuses = [client.post("/chat/completions", json=payload).status_code
                for _ in range(4)]

    assert statuses == [500, 500, 200, 200]


def test_cut_directive_ends_the_stream_without_finish_chunk_or_done(client):
    lines = stream(client, body("Hi [sim deltas=5 cut=2]"))

    assert [json.loads(line)["content"] for line in lines] == ["", "t0 ", "t0 t1 "]


def test_cut_directive_past_the_end_drops_only_the_finish_and_done(client):
    lines = stream(client, body("Hi [sim deltas=2 cut=99]"))

    assert [json.loads(line)["lastOne"] for line in lines] == [False, False, False]


def test_malformed_directive_sends_the_references_stray_brace(client):
    lines = stream(client, body("Hi [sim deltas=3 malformed=2]"))

    assert '"choices":[{"delta":{"content":"t1 "}},"index":0}]' in lines[2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[2])


def test_chunks_after_a_malformed_one_are_valid_and_keep_accumulating(client):
    lines = stream(client, body("Hi [sim deltas=3 malformed=2]"))

    assert json.loads(lines[3])["content"] == "t0 t1 t2 "
    assert json.loads(lines[4])["lastOne"] is True
    assert lines[5] == "[DONE]"


def test_stall_directive_goes_silent_after_n_deltas_then_continues(client):
    times = arrival_times(client, body("Hi [sim deltas=3 stall=1 stall_for=0.5]"))

    assert len(times) == 6
    assert times[2] >= 0.5


def test_accumulate_0_omits_the_top_level_content(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=2 accumulate=0]"))

    assert all("content" not in chunk for chunk in chunks)


def test_usage_0_omits_usage_from_the_last_chunk(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=2 usage=0]"))

    assert chunks[-1]["lastOne"] is True and "usage" not in chunks[-1]


def test_stamp_directive_numbers_each_delta_and_stamps_the_time_it_was_sent(client):
    before = time.time()
    chunks = stream_chunks(client, body("Hi [sim deltas=3 interval=20 stamp=1]"))
    after = time.time()
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]

    stamps = [re.fullmatch(r"t(\d)@(\d+\.\d{6}) ", piece).groups() for piece in pieces]
    assert [index for index, _ in stamps] == ["0", "1", "2"]
    sent = [float(at) for _, at in stamps]
    assert sent[2] <= after
    # On a schedule of one every 20 ms from the request, none early (less up to a
    # microsecond lost to rounding).
    assert all(at >= before + 0.020 * (i + 1) - 1e-6 for i, at in enumerate(sent))
    assert chunks[-1]["content"] == "".join(pieces)


def test_stamp_2_writes_a_colon_that_markdown_leaves_as_text(client):
    chunks = stream_chunks(client, body("Hi [sim deltas=2 interval=0 stamp=2]"))
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]

    assert [re.fullmatch(r"t(\d):\d+\.\d{6} ", piece).group(1) for piece in pieces] == ["0", "1"]


def test_unknown_directive_is_400(client):
    response = client.post("/chat/completions", json=body("Hi [sim delta=3]"))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: unknown simulator directive 'delta=3'.",
        "invalid_request_error")


def test_only_the_last_user_message_carries_directives(client):
    messages = [*user_turn("[sim status=500]"), {"role": "assistant", "content": "ok"},
                *user_turn("Hi [sim deltas=1]")]
    response = client.post("/chat/completions",
                           json={"model": "yi-large", "messages": messages})

    assert response.json()["choices"][0]["message"]["content"] == "t0 "


# ---------------------------------------------------------------- environment

def test_simulator_api_key_env_accepts_only_that_key(configured_simulator):
    url = f"{configured_simulator}/chat/completions"
    payload = body("Hi [sim deltas=1]")

    wrong = httpx.post(url, json=payload, headers={"Authorization": "Bearer sk-test"})
    right = httpx.post(url, json=payload, headers={"Authorization": "Bearer sk-the-only-one"})

    assert (wrong.status_code, right.status_code) == (401, 200)


def test_simulator_delta_ms_env_sets_the_default_pace(configured_simulator):
    with httpx.Client(base_url=configured_simulator, timeout=10,
                      headers={"Authorization": "Bearer sk-the-only-one"}) as client:
        times = arrival_times(client, body("Hi [sim deltas=5]"))

    assert times[5] >= 5 * 0.04


# ---------------------------------------------------------------- refusals

def test_missing_key_is_401(simulator):
    response = httpx.post(f"{simulator}/chat/completions", json=body("Hi"))

    assert response.status_code == 401
    assert response.json() == error_body(
        401, "Authentication Error: API Key is missing or invalid.", "authentication_error")


def test_key_starting_with_invalid_is_401(simulator):
    response = httpx.post(f"{simulator}/chat/completions", json=body("Hi"),
                          headers={"Authorization": "Bearer invalid-key"})

    assert response.status_code == 401


def test_uppercase_model_name_is_400(client):
    response = client.post("/chat/completions", json=body("Hi", model="Yi-Large"))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: the model name must be all lowercase, e.g. yi-large.",
        "invalid_request_error")


def test_unknown_model_is_404(client):
    response = client.post("/chat/completions", json=body("Hi", model="yi-small"))

    assert response.status_code == 404
    assert response.json() == error_body(
        404, "Not found: the model 'yi-small' does not exist.", "not_found_error")


def test_malformed_json_body_is_400(client):
    response = client.post("/chat/completions", content=b'{"model": "yi-large",',
                           headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Input format error: the body is not valid JSON.")


def test_missing_messages_is_400(client):
    response = client.post("/chat/completions", json={"model": "yi-large"})

    assert response.status_code == 400


def test_prompt_over_the_context_window_is_400(client):
    response = client.post("/chat/completions",
                           json=body("x" * 16000, model="yi-large-turbo", max_tokens=200))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Bad request: context length exceeded. yi-large-turbo has a maximum context "
             "window of 4096 tokens, but this request needs 4200 (4000 in the messages + "
             "200 max_tokens). Reduce the inputs length, or set max_tokens to a smaller "
             "value.", "context_length_exceeded")


def test_unknown_path_is_404(client):
    response = client.get("/engines")

    assert response.status_code == 404


# ---------------------------------------------------------------- tools

def test_tool_call_answer_without_stream(client):
    response = client.post("/chat/completions", json=body(
        "Compute it", model="yi-large-fc", tools=[CALCULATOR], tool_choice="auto"))

    choice = response.json()["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "calculator"
    assert json.loads(call["function"]["arguments"]) == {"time": "1", "type": "YoY"}


def test_tool_call_stream_names_the_call_then_splits_the_arguments(client):
    chunks = stream_chunks(client, body(
        "Compute it", model="yi-large-fc", tools=[CALCULATOR]))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]

    assert len(calls) >= 3
    assert calls[0]["function"]["name"] == "calculator" and calls[0]["index"] == 0
    assert calls[0]["id"].startswith("call_")
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {
        "time": "1", "type": "YoY"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_none_answers_in_text(client):
    response = client.post("/chat/completions", json=body(
        "Hi [sim deltas=1]", model="yi-large-fc", tools=[CALCULATOR], tool_choice="none"))

    assert response.json()["choices"][0]["message"]["content"] == "t0 "


def test_tool_result_is_quoted_in_a_text_answer(client):
    messages = [
        *user_turn("Compute it [sim interval=0]"),
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "calculator", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"change": "0.79%"}'},
    ]
    response = client.post("/chat/completions", json={
        "model": "yi-large-fc", "messages": messages, "tools": [CALCULATOR]})

    answer = response.json()["choices"][0]
    assert answer["finish_reason"] == "stop"
    assert answer["message"]["content"].startswith(
        'The tool `calculator` returned:\n\n```\n{"change": "0.79%"}\n```')
