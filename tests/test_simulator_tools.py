"""The simulator's tool use (chat/simulator_tools.py), over real HTTP against a Daphne subprocess,
with the app's own tools (chat/tools) run on the calls it makes."""

import json

import httpx
import pytest

from chat.tools import tool_run, tool_specs
from chat.upstream_events import Finish, StreamDecoder, ToolCallDelta
from tests.simulator_server import running_simulator
from tests.test_simulator import KEY, error_body, stream_chunks

# The reference's tool-use question, as its example sends it.
REVENUE_QUESTION = (
    "According to the table below, calculate the MoM and YoY data of April 2024: \n| Month     | Revenue  | \n"
    "|---------|---------|\n| 2023-01 |   25.78   |\n| 2023-02 |   20.23   |\n| 2023-03 |   21.27   |\n"
    "| 2023-04 |   20.96   |\n| 2023-05 |   24.33   |\n| 2023-06 |   22.51   |\n| 2023-07 |   23.97   |\n"
    "| 2023-08 |   25.86   |\n| 2023-09 |   27.05   |\n| 2023-10 |   28.23   |\n| 2023-11 |   27.17   |\n"
    "| 2023-12 |   28.88   |\n| 2024-01 |   26.33   |\n| 2024-02 |   25.25   |\n| 2024-03 |   28.89   |\n"
    "| 2024-04 |   29.12   |\n| 2024-05 |   30.08   |\n| 2024-06 |   29.75   |\n| 2024-07 |   28.83   |"
)
APRIL_CALLS = [
    ("percentage_change", {"time": "2024-04", "type": "MoM", "pre_value": "28.89", "current_value": "29.12"}),
    ("percentage_change", {"time": "2024-04", "type": "YoY", "pre_value": "20.96", "current_value": "29.12"}),
]
# The reference's own tool: the same parameters under the name "calculator".
REFERENCE_CALCULATOR = {**tool_specs(["percentage_change"])[0]}
REFERENCE_CALCULATOR["function"] = {**REFERENCE_CALCULATOR["function"], "name": "calculator"}
ALL_TOOLS = tool_specs()


@pytest.fixture(scope="module")
def simulator():
    with running_simulator({"SIMULATOR_DELTA_MS": "0"}) as base_url:
        yield base_url


@pytest.fixture
def client(simulator):
    with httpx.Client(base_url=simulator, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


def ask(text: str, tools=ALL_TOOLS, model="yi-large-fc", **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "tools": tools, **fields}


def complete(client: httpx.Client, body: dict) -> dict:
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


def calls_of(choice: dict) -> list[tuple[str, dict]]:
    assert choice["finish_reason"] == "tool_calls"
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in choice["message"]["tool_calls"]]


def streamed_calls(chunks: list[dict]) -> list[dict]:
    """The calls of a stream, merged by index as a client must: {"id", "name", "arguments", "pieces"}."""
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": "", "pieces": 0})
            call["id"] = delta.get("id") or call["id"]
            call["name"] = delta.get("function", {}).get("name") or call["name"]
            piece = delta["function"].get("arguments", "")
            call["arguments"] += piece
            call["pieces"] += bool(piece)
    return [calls[index] for index in sorted(calls)]


def results_for(messages: list, choice: dict) -> list:
    """The conversation after running the calls with the app's tools, as the tool loop will."""
    calls = choice["message"]["tool_calls"]
    messages = [*messages, {"role": "assistant", "content": None, "tool_calls": calls}]
    for call in calls:
        result = tool_run(call["function"]["name"], call["function"]["arguments"])
        messages.append({"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                         "content": result.content})
    return messages


# ---------------------------------------------------------------- the reference's question

def test_the_references_question_is_two_calls_with_the_tables_figures(client):
    choice = complete(client, ask(REVENUE_QUESTION, tool_choice="auto"))

    assert choice["message"]["content"] is None
    assert calls_of(choice) == APRIL_CALLS
    assert [c["type"] for c in choice["message"]["tool_calls"]] == ["function", "function"]
    ids = [c["id"] for c in choice["message"]["tool_calls"]]
    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2


def test_the_references_own_calculator_gets_the_same_calls(client):
    choice = complete(client, ask(REVENUE_QUESTION, tools=[REFERENCE_CALCULATOR]))

    assert calls_of(choice) == [("calculator", arguments) for _, arguments in APRIL_CALLS]


def test_two_streamed_calls_name_themselves_then_split_their_arguments(client):
    chunks = stream_chunks(client, {**ask(REVENUE_QUESTION), "stream": True})
    calls = streamed_calls(chunks)

    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == APRIL_CALLS
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert all(c["pieces"] >= 5 for c in calls)  # the arguments come in pieces, as tokens
    first = chunks[1]["choices"][0]["delta"]["tool_calls"][0]
    assert first == {"index": 0, "id": calls[0]["id"], "type": "function",
                     "function": {"name": "percentage_change", "arguments": ""}}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == len(chunks) - 2
    assert all(chunk["content"] == "" for chunk in chunks)


def test_our_stream_decoder_reads_the_two_calls(client):
    response = client.post("/chat/completions", json={**ask(REVENUE_QUESTION), "stream": True})
    decoder = StreamDecoder()
    events = decoder.feed(response.content) + decoder.close()
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    merged: dict[int, str] = {}
    for delta in deltas:
        merged[delta.index] = merged.get(delta.index, "") + delta.arguments

    assert [(d.index, d.name) for d in deltas if d.name] == [(0, "percentage_change"), (1, "percentage_change")]
    assert [json.loads(merged[i]) for i in (0, 1)] == [arguments for _, arguments in APRIL_CALLS]
    assert events[-1] == Finish("tool_calls")


def test_the_answer_after_the_tools_quotes_each_result(client):
    messages = [{"role": "user", "content": REVENUE_QUESTION}]
    first = complete(client, ask(REVENUE_QUESTION))
    answer = complete(client, {**ask(""), "messages": results_for(messages, first)})

    assert answer["finish_reason"] == "stop"
    assert answer["message"]["content"] == (
        'The tool `percentage_change` returned:\n\n```\n{"time": "2024-04", "type": "MoM", "change": "0.80%"}\n```'
        '\n\nThe tool `percentage_change` returned:\n\n```\n{"time": "2024-04", "type": "YoY", "change": "38.93%"}'
        "\n```\n\nThose are the results, as read by the offline simulator.")


def test_the_streamed_answer_after_the_tools_carries_the_figures(client):
    messages = [{"role": "user", "content": REVENUE_QUESTION}]
    first = complete(client, ask(REVENUE_QUESTION))
    chunks = stream_chunks(client, {**ask(""), "messages": results_for(messages, first), "stream": True})
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

    assert '"change": "0.80%"' in text and '"change": "38.93%"' in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# ---------------------------------------------------------------- what the question asks

def test_a_time_zone_in_the_question_is_asked_of_current_time(client):
    choice = complete(client, ask("What time is it in Asia/Shanghai now?"))

    assert calls_of(choice) == [("current_time", {"timezone": "Asia/Shanghai"})]


def test_an_expression_in_the_question_is_asked_of_the_calculator(client):
    choice = complete(client, ask("What is (1234.5 - 1000) * 1.07^3, exactly?"))

    assert calls_of(choice) == [("calculator", {"expression": "(1234.5 - 1000) * 1.07^3"})]


def test_a_named_function_is_called_for_what_the_question_asks_of_it(client):
    choice = complete(client, ask("What is 6*7 in Asia/Tokyo?",
                                  tool_choice={"type": "function", "function": {"name": "calculator"}}))

    assert calls_of(choice) == [("calculator", {"expression": "6*7"})]


def test_a_date_is_not_an_expression(client):
    choice = complete(client, ask("Was 2024-04-01 a Monday?", tools=tool_specs(["calculator"])))

    assert calls_of(choice) == [("calculator", {"expression": "1"})]


def test_a_question_it_cannot_read_calls_the_first_tool_with_placeholders(client):
    choice = complete(client, ask("Hello there"))

    assert calls_of(choice) == [("calculator", {"expression": "1"})]


def test_tool_calls_0_answers_in_text_under_auto(client):
    choice = complete(client, ask("Hello there [sim tool_calls=0 deltas=2]"))

    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == "t0 t1 "


def test_a_model_without_tools_answers_in_text(client):
    choice = complete(client, ask(REVENUE_QUESTION + " [sim deltas=1]", model="yi-large"))

    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


# ---------------------------------------------------------------- directives

def test_sim_call_directives_are_the_calls_in_order(client):
    choice = complete(client, ask(
        'Two things [sim-call current_time {"timezone": "Europe/Paris"}] and '
        '[sim-call calculator {"expression": "6 * 7"}]'))

    assert calls_of(choice) == [("current_time", {"timezone": "Europe/Paris"}), ("calculator", {"expression": "6 * 7"})]


def test_sim_call_may_name_a_tool_nobody_offered(client):
    choice = complete(client, ask("[sim-call weather {\"city\": \"Paris\"}]"))

    assert calls_of(choice) == [("weather", {"city": "Paris"})]
    assert json.loads(tool_run("weather", '{"city": "Paris"}').content) == {
        "error": "There is no tool named 'weather'; the tools are: calculator, current_time, percentage_change."}


def test_sim_call_without_arguments_uses_placeholders(client):
    choice = complete(client, ask("[sim-call percentage_change]"))

    assert calls_of(choice) == [("percentage_change", {"time": "1", "type": "YoY", "pre_value": "1",
                                                       "current_value": "1"})]


def test_sim_call_arguments_are_split_even_inside_escapes(client):
    expression = 'sqrt(2) \\ "x" 北京'
    chunks = stream_chunks(client, {**ask("[sim-call calculator " + json.dumps({"expression": expression})
                                          + "]"), "stream": True})

    assert json.loads(streamed_calls(chunks)[0]["arguments"]) == {"expression": expression}


def test_a_sim_call_that_is_not_json_is_a_400(client):
    response = client.post("/chat/completions", json=ask("[sim-call calculator {expression: 1}]"))

    assert response.status_code == 400
    assert response.json() == error_body(
        400, "Input format error: the arguments of simulator directive [sim-call calculator ...] are not a JSON "
             "object.", "invalid_request_error")


def test_broken_arguments_in_the_first_round_then_whole(client):
    text = '[sim broken=2 tool_rounds=2] [sim-call calculator {"expression": "1+1"}] ' \
           '[sim-call calculator {"expression": "2+2"}]'
    messages = [{"role": "user", "content": text}]
    first = complete(client, ask(text))
    arguments = [c["function"]["arguments"] for c in first["message"]["tool_calls"]]

    assert arguments[0] == '{"expression": "1+1"}' and arguments[1] == '{"expression": "2+2"'
    assert tool_run("calculator", arguments[1]).error.startswith("The arguments of calculator are not valid JSON")
    second = complete(client, {**ask(text), "messages": results_for(messages, first)})
    assert calls_of(second) == [("calculator", {"expression": "1+1"}), ("calculator", {"expression": "2+2"})]


def test_tool_rounds_calls_again_until_the_rounds_are_done(client):
    text = "[sim tool_rounds=3] [sim-call calculator {\"expression\": \"6*7\"}]"
    messages = [{"role": "user", "content": text}]
    for _ in range(3):
        choice = complete(client, {**ask(text), "messages": messages})
        assert calls_of(choice) == [("calculator", {"expression": "6*7"})]
        messages = results_for(messages, choice)
    answer = complete(client, {**ask(text), "messages": messages})

    assert answer["message"]["content"].startswith(
        'The tool `calculator` returned:\n\n```\n{"expression": "6*7", "result": "42"}\n```')


# ---------------------------------------------------------------- tool_choice

def test_tool_choice_none_never_calls(client):
    choice = complete(client, ask("[sim deltas=1] [sim-call calculator {\"expression\": \"1\"}]", tool_choice="none"))

    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == "t0 "


def test_tool_choice_required_calls_even_when_told_not_to(client):
    choice = complete(client, ask("Hello [sim tool_calls=0]", tool_choice="required"))

    assert calls_of(choice) == [("calculator", {"expression": "1"})]


def test_tool_choice_required_calls_again_after_the_results(client):
    messages = [{"role": "user", "content": "What is 6*7?"}]
    first = complete(client, ask("What is 6*7?", tool_choice="required"))
    second = complete(client, {**ask(""), "messages": results_for(messages, first), "tool_choice": "required"})
    after_auto = complete(client, {**ask(""), "messages": results_for(messages, first), "tool_choice": "auto"})

    assert calls_of(second) == [("calculator", {"expression": "6*7"})]
    assert after_auto["finish_reason"] == "stop"


def test_tool_choice_naming_a_function_calls_it_alone(client):
    function = {"type": "function", "function": {"name": "current_time"}}
    asked = complete(client, ask("What is 6*7 in Asia/Tokyo?", tool_choice=function))
    directed = complete(client, ask('[sim-call calculator {"expression": "1"}] [sim-call current_time '
                                    '{"timezone": "Asia/Tokyo"}]', tool_choice=function))
    unasked = complete(client, ask("What is 6*7?", tool_choice=function))

    assert calls_of(asked) == [("current_time", {"timezone": "Asia/Tokyo"})]
    assert calls_of(directed) == [("current_time", {"timezone": "Asia/Tokyo"})]
    assert calls_of(unasked) == [("current_time", {})]


def test_tool_choice_auto_streams_like_the_default(client):
    chunks = stream_chunks(client, {**ask("What is 6*7?", tool_choice="auto"), "stream": True})

    assert [(c["name"], json.loads(c["arguments"])) for c in streamed_calls(chunks)] == [
        ("calculator", {"expression": "6*7"})]


@pytest.mark.parametrize(("tools", "tool_choice", "sentence"), [
    (ALL_TOOLS, "always", 'tool_choice must be "auto", "none", "required" or '
                          '{"type": "function", "function": {"name": ...}}.'),
    (ALL_TOOLS, {"type": "function", "name": "calculator"}, 'tool_choice must be "auto", "none", "required" or '
                                                             '{"type": "function", "function": {"name": ...}}.'),
    (ALL_TOOLS, {"type": "function", "function": {"name": "weather"}},
     "tool_choice names the function 'weather', which is not among tools."),
    ([], "required", 'tool_choice "required" needs tools.'),
    ([{"type": "function", "function": {}}], "auto",
     'tools must be a list of {"type": "function", "function": {"name": ..., "parameters": {...}}}.'),
])
def test_a_tool_choice_the_api_cannot_honour_is_a_400(client, tools, tool_choice, sentence):
    response = client.post("/chat/completions", json=ask("Hi", tools=tools, tool_choice=tool_choice))

    assert response.status_code == 400
    assert response.json() == error_body(400, "Input format error: " + sentence, "invalid_request_error")


# ---------------------------------------------------------------- the conversation's shape

CALL = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
OTHER_CALL = {**CALL, "id": "call_2"}


@pytest.mark.parametrize(("messages", "sentence"), [
    ([{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "call_1", "content": "{}"}],
     "messages[1] has role tool but answers no tool call of the assistant message before it "
     "(tool_call_id 'call_1')."),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [CALL, OTHER_CALL]},
      {"role": "tool", "tool_call_id": "call_1", "content": "{}"}, {"role": "user", "content": "And?"}],
     "the tool calls call_2 of an assistant message have no role tool message answering them before messages[3]."),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
     "the tool calls call_1 of the last assistant message have no role tool message answering them."),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1"}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "{}"}],
     'messages[1].tool_calls must be a list of {"id": ..., "type": "function", "function": {"name": ..., '
     '"arguments": "..."}}.'),
])
def test_tool_calls_without_their_results_are_a_400(client, messages, sentence):
    response = client.post("/chat/completions", json={**ask(""), "messages": messages})

    assert response.status_code == 400
    assert response.json() == error_body(400, "Input format error: " + sentence, "invalid_request_error")
