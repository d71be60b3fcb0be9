"""The built-in tools (chat/tools): the registry's checks and each tool, called as the model calls them."""

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chat.tools import (
    TOOLS,
    Tool,
    ToolError,
    ToolResult,
    registry,
    tool_names,
    tool_register,
    tool_run,
    tool_run_async,
    tool_specs,
)

# The reference's question: April 2024 against March 2024 (MoM) and April 2023 (YoY).
APRIL_MOM = {"time": "2024-04", "type": "MoM", "pre_value": "28.89", "current_value": "29.12"}
APRIL_YOY = {"time": "2024-04", "type": "YoY", "pre_value": "20.96", "current_value": "29.12"}
KNOWS = ("it knows numbers, + - * / // % ** (or ^), parentheses, pi, e and the functions sqrt, abs, round, floor, "
         "ceil, ln, log, log10, exp, sin, cos, tan, min, max and factorial.")


def run(name: str, **arguments) -> ToolResult:
    return tool_run(name, json.dumps(arguments))


def calculate(expression: str) -> str:
    result = run("calculator", expression=expression)
    assert result.ok, result.error
    return json.loads(result.content)["result"]


def refusal(expression: str) -> str:
    result = run("calculator", expression=expression)
    assert not result.ok
    assert json.loads(result.content) == {"error": result.error}
    return result.error


@pytest.fixture
def test_tool():
    """Register tools of the test's own for the test's length."""
    added = []

    def add(name, function, parameters=None):
        added.append(name)
        return tool_register(Tool(name, f"{name} for a test", parameters or {"type": "object"}, function))

    yield add
    for name in added:
        registry.tool_unregister(name)


# ---------------------------------------------------------------- the registry

def test_specs_are_the_references_tools_entries():
    assert tool_names() == ["calculator", "current_time", "percentage_change"]
    assert tool_specs(["percentage_change"]) == [{
        "type": "function",
        "function": {
            "name": "percentage_change",
            "description": "YoY and MoM data calculator. YoY means year over year changes and MoM means month "
                           "over month changes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "time": {"type": "string", "description": "date, month, or year information", "maxLength": 100},
                    "type": {"type": "string", "enum": ["YoY", "MoM"]},
                    "pre_value": {"type": "string", "description": "previous value being compared", "maxLength": 40},
                    "current_value": {"type": "string", "description": "current data for comparison",
                                      "maxLength": 40},
                },
                "required": ["time", "type", "pre_value", "current_value"],
                "additionalProperties": False,
            },
        },
    }]
    assert [spec["function"]["name"] for spec in tool_specs()] == tool_names()
    assert [spec["function"]["name"] for spec in tool_specs(["current_time", "calculator"])] == [
        "current_time", "calculator"]


def test_a_spec_is_a_copy_the_caller_may_change():
    tool_specs(["calculator"])[0]["function"]["parameters"]["required"].append("x")

    assert tool_specs(["calculator"])[0]["function"]["parameters"]["required"] == ["expression"]


def test_every_tool_is_json_serialisable_in_a_request():
    for spec in tool_specs():
        assert json.loads(json.dumps(spec)) == spec
        assert spec["function"]["description"]


def test_a_tool_with_an_invalid_schema_is_refused_at_registration():
    with pytest.raises(Exception, match="is not valid under any of the given schemas|is not of type"):
        tool_register(Tool("broken", "", {"type": "object", "properties": {"x": {"type": "nonsense"}}}, dict))
    assert "broken" not in TOOLS


def test_invalid_json_arguments_say_so_and_show_the_shape():
    result = tool_run("calculator", '{"expression": "2+')

    assert result == ToolResult(
        content=json.dumps({"error": result.error}), ok=False, elapsed_ms=result.elapsed_ms,
        error="The arguments of calculator are not valid JSON (Unterminated string starting at: line 1 column 16 "
              "(char 15)); send them as one JSON object, e.g. {\"expression\": ...}.")


def test_arguments_that_are_not_an_object_are_refused():
    assert tool_run("calculator", "[1, 2]").error == (
        "The arguments of calculator must be a JSON object, e.g. {\"expression\": ...}, not list.")


def test_empty_arguments_are_an_empty_object():
    result = tool_run("current_time", "")

    assert result.ok and json.loads(result.content)["timezone"] == "UTC"


def test_arguments_that_fail_the_schema_name_each_failure():
    result = tool_run("percentage_change", json.dumps({"time": "2024-04", "type": "QoQ", "pre_value": 28.89}))

    assert result.error == (
        "The arguments do not fit percentage_change's parameters: 'current_value' is a required property; "
        "pre_value: 28.89 is not of type 'string'; type: 'QoQ' is not one of ['YoY', 'MoM'].")


def test_an_unexpected_argument_is_named():
    assert run("calculator", expr="1").error == (
        "The arguments do not fit calculator's parameters: 'expression' is a required property; "
        "Additional properties are not allowed ('expr' was unexpected).")


def test_an_unknown_tool_is_refused_with_the_list_of_tools():
    assert run("weather", city="Paris").error == (
        "There is no tool named 'weather'; the tools are: calculator, current_time, percentage_change.")


def test_a_tool_not_offered_is_refused_with_the_tools_offered():
    result = tool_run("current_time", "{}", offered=["calculator"])

    assert result.error == "There is no tool named 'current_time'; the tools are: calculator."


def test_overlong_arguments_are_refused_before_parsing():
    result = tool_run("calculator", " " * 20_001)

    assert result.error == "The arguments of calculator are 20,001 characters long; the limit is 20,000."


def test_a_tool_that_raises_becomes_a_result(test_tool, caplog):
    def explode():
        raise KeyError("boom")

    test_tool("explode", explode)
    result = tool_run("explode", "{}")

    assert not result.ok
    assert result.error == "The tool explode failed: KeyError: 'boom'."
    assert "tool explode failed" in caplog.text and "Traceback" in caplog.text


def test_a_tool_error_is_its_sentence(test_tool):
    def refuse():
        raise ToolError("That figure is not in the table.")

    test_tool("refuse", refuse)

    assert tool_run("refuse", "{}").error == "That figure is not in the table."


def test_a_result_carries_its_time(test_tool):
    test_tool("nap", lambda: time.sleep(0.05) or "rested")
    result = tool_run("nap", "{}")

    assert result.ok and result.content == "rested"
    assert 50 <= result.elapsed_ms < 1000


async def test_a_slow_tool_times_out_without_holding_the_event_loop(test_tool):
    release = threading.Event()
    test_tool("slow", lambda: release.wait(10) and "late")
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticking = asyncio.create_task(ticker())
    start = time.monotonic()
    try:
        result = await tool_run_async("slow", "{}", timeout=0.3)
    finally:
        ticking.cancel()
        release.set()
    took = time.monotonic() - start

    assert result.error == (
        "The tool slow took longer than 0.3 seconds and was stopped; try a smaller or simpler request.")
    assert not result.ok and 300 <= result.elapsed_ms < 1000
    assert 0.3 <= took < 1.0
    # The loop went on turning while the tool ran: a tool run on the loop would leave one
    # gap as long as its whole timeout (0.3 s). Not tighter than 0.25 s: a busy 2-core
    # machine leaves any runnable thread waiting ~0.1 s at times (CI: 0.11 s once).
    assert len(ticks) >= 5 and max(b - a for a, b in zip(ticks, ticks[1:])) < 0.25


async def test_a_busy_tool_times_out_while_the_event_loop_goes_on(test_tool):
    # Pure Python that computes rather than waits: it shares the GIL with the loop's
    # thread, which still gets it every switch interval (5 ms).
    release = threading.Event()

    def spin():
        end = time.monotonic() + 5
        while not release.is_set() and time.monotonic() < end:
            sum(range(1000))
        return "done"

    test_tool("spin", spin)
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    start = time.monotonic()
    try:
        result = await tool_run_async("spin", "{}", timeout=0.3)
    finally:
        ticking.cancel()
        release.set()

    assert result.error.startswith("The tool spin took longer than 0.3 seconds")
    assert time.monotonic() - start < 1.0
    # As above: the loop never waited the tool's whole timeout.
    assert len(ticks) >= 5 and max(b - a for a, b in zip(ticks, ticks[1:])) < 0.25


async def test_a_quick_tool_runs_off_the_event_loop():
    loop_thread = threading.current_thread()
    seen = []
    test = Tool("where", "", {"type": "object"}, lambda: seen.append(threading.current_thread()) or "here")
    tool_register(test)
    try:
        result = await tool_run_async("where", "{}", timeout=5)
    finally:
        registry.tool_unregister("where")

    assert result.ok and result.content == "here"
    assert seen and seen[0] is not loop_thread and seen[0].name.startswith("tool")


async def test_calls_in_one_turn_run_at_once(test_tool):
    test_tool("nap", lambda: time.sleep(0.3) or "rested")
    start = time.monotonic()
    results = await asyncio.gather(*(tool_run_async("nap", "{}", timeout=5) for _ in range(3)))

    assert [r.content for r in results] == ["rested"] * 3
    assert time.monotonic() - start < 0.8


async def test_cancelling_a_call_raises_in_the_caller(test_tool):
    release = threading.Event()
    test_tool("slow", lambda: release.wait(10) and "late")
    call = asyncio.create_task(tool_run_async("slow", "{}", timeout=5))
    await asyncio.sleep(0.05)
    call.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await call
    finally:
        release.set()


# ---------------------------------------------------------------- calculator

@pytest.mark.parametrize(("expression", "value"), [
    ("0.1 + 0.2", "0.3"),
    ("(29.12 - 28.89) / 28.89 * 100", "0.796123226029768085842852198"),
    ("1234.5 * 1.07 ** 3", "1512.3155835"),
    ("2 ** 10", "1024"),
    ("2^10", "1024"),
    ("2 + 3^2", "11"),
    ("-2 ** 2", "-4"),
    ("(-2) ** 2", "4"),
    ("7 // 2", "3"),
    ("-7 // 2", "-4"),
    ("-7 % 2", "1"),
    ("7 % -2", "-1"),
    ("1 / 3", "0.3333333333333333333333333333"),
    ("2 ** 100", "1.267650600228229401496703205E+30"),
    ("10 ** -3", "0.001"),
    ("sqrt(2)", "1.414213562373095048801688724"),
    ("sqrt(16)", "4"),
    ("round(2.675, 2)", "2.68"),
    ("round(-2.5)", "-3"),
    ("round(1234.5678, -2)", "1200"),
    ("abs(-3.5)", "3.5"),
    ("floor(-2.5) + ceil(2.1)", "0"),
    ("log(8, 2)", "3"),
    ("log10(1000)", "3"),
    ("ln(e)", "1"),
    ("exp(0)", "1"),
    ("sin(pi / 6)", "0.5"),
    ("cos(0)", "1"),
    ("min(3, 1, 2) + max(3, 1, 2)", "4"),
    ("factorial(20)", "2432902008176640000"),
    ("0 ** 0", "1"),
    ("1e3 + 1_000", "2000"),
    ("3 × 4 ÷ 2 − 1", "5"),
])
def test_calculator_computes(expression, value):
    assert calculate(expression) == value


def test_calculator_result_names_the_expression():
    assert json.loads(run("calculator", expression="6*7").content) == {"expression": "6*7", "result": "42"}


# Each refused in well under the limit asserted; the point is that none is computed.
HOSTILE = [
    ("9**9**9", "The exponent in '9**9**9' is 387420489; the calculator takes exponents up to 10,000."),
    ("10**10**10", "The exponent in '10**10**10' is 10000000000; the calculator takes exponents up to 10,000."),
    ("2**400", "'2**400' would be about 10^120, past the calculator's limit of 10^100."),
    ("((2**64)**64)**64", "'(2**64)**64' would be about 10^1,233, past the calculator's limit of 10^100."),
    ("99999999**99999999", "The exponent in '99999999**99999999' is 99999999; the calculator takes exponents up "
                           "to 10,000."),
    ("factorial(100000)", "'factorial(100000)' would be about 10^456,573, past the calculator's limit of 10^100."),
    ("factorial(factorial(10))", "'factorial(factorial(10))' would be about 10^22,228,103, past the calculator's "
                                 "limit of 10^100."),
    ("exp(10**50)", "'exp(10**50)' is too large, past the calculator's limit of 10^100."),
    ("1e99 * 1e99", "'1e99 * 1e99' would be about 10^198, past the calculator's limit of 10^100."),
    ("1e999999999", "'1e999999999' is too large, past the calculator's limit of 10^100."),
    ("0.5 ** 10000", "'0.5 ** 10000' is closer to zero than the calculator can hold (10^-999)."),
    ("(" * 31 + "1" + ")" * 31, "The expression nests parentheses 31 deep; the calculator takes at most 30."),
    ("1+" * 250 + "1", "The expression is 501 characters long; the calculator takes at most 500. "
                       "Split it into smaller calculations."),
    ("1 << 100000", "The calculator does not do LShift ('1 << 100000'); " + KNOWS),
    ("__import__('os').system('ls')", "The calculator has no function \"__import__('os').system\" (or it was given "
                                      "named arguments); " + KNOWS),
    ("(1).__class__", "The calculator does not do attributes (a dot after a name) ('(1).__class__'); " + KNOWS),
    ("[1] * 10**8", "The calculator does not do lists ('[1]'); " + KNOWS),
    ("'a' * 10**9", "The calculator takes numbers, not str (\"'a'\"); " + KNOWS),
    ("[x for x in range(10**9)]", "The calculator does not do comprehensions ('[x for x in range(10**9)]'); " + KNOWS),
    ("lambda: 1", "The calculator does not do lambda ('lambda: 1'); " + KNOWS),
    ("x", "The calculator does not know 'x'; " + KNOWS),
]


@pytest.mark.parametrize(("expression", "sentence"), HOSTILE)
def test_calculator_refuses_hostile_expressions_at_once(expression, sentence):
    # Straight to the registry's inner call: the JSON Schema's own length check would
    # answer the overlong one first, and this is about the calculator.
    start = time.perf_counter()
    with pytest.raises(ToolError) as refused:
        TOOLS["calculator"].function(expression=expression)
    took = time.perf_counter() - start

    assert str(refused.value) == sentence
    assert took < 0.05


def test_an_unbounded_expression_is_refused_through_the_whole_call_in_milliseconds():
    result = run("calculator", expression="9**9**9")

    assert not result.ok and result.elapsed_ms < 50


@pytest.mark.parametrize(("expression", "sentence"), [
    ("1/0", "'1/0' divides by zero."),
    ("5 // 0", "'5 // 0' divides by zero."),
    ("0 ** -1", "'0 ** -1' divides by zero."),
    ("sqrt(-1)", "'sqrt(-1)' has no real value: the square root of a negative number."),
    ("(-8) ** (1/3)", "'(-8) ** (1/3)' has no real value: a negative number to a fractional power."),
    ("ln(0)", "'ln(0)' has no value: a logarithm needs a positive number (and a positive base other than 1)."),
    ("factorial(2.5)", "'factorial(2.5)': factorial takes a whole number, 0 or more."),
    ("min()", "min takes at least 1 argument, not 0 ('min()')."),
    ("round(1, 2, 3)", "round takes 1 to 2 arguments, not 3 ('round(1, 2, 3)')."),
    ("round(5.5, 28)", "'round(5.5, 28)': that many decimal places would pass the calculator's 28 significant "
                       "digits."),
    ("", "The expression is empty; write one, e.g. (29.12 - 28.89) / 28.89 * 100."),
    ("2 +", "'2 +' is not an arithmetic expression the calculator can read (invalid syntax); " + KNOWS),
    ("1 < 2", "The calculator does not do comparisons ('1 < 2'); " + KNOWS),
    ("1j", "The calculator takes numbers, not complex ('1j'); " + KNOWS),
])
def test_calculator_explains_what_it_cannot_compute(expression, sentence):
    assert refusal(expression) == sentence


def test_a_long_chain_of_operations_is_computed():
    assert calculate("-" * 499 + "1") == "-1"
    assert calculate("+".join(["1"] * 250)) == "250"


# ---------------------------------------------------------------- percentage_change

def test_percentage_change_answers_the_references_question():
    assert json.loads(run("percentage_change", **APRIL_MOM).content) == {
        "time": "2024-04", "type": "MoM", "change": "0.80%"}
    assert json.loads(run("percentage_change", **APRIL_YOY).content) == {
        "time": "2024-04", "type": "YoY", "change": "38.93%"}


@pytest.mark.parametrize(("pre", "current", "change"), [
    ("100", "80", "-20.00%"),
    ("8", "8.0004", "0.01%"),  # exactly 0.005%: rounded up, as a person would
    ("-10", "-5", "50.00%"),  # a loss halved is a rise
    ("1,000", "1,234.5", "23.45%"),
    (" 28.89 ", "29.12", "0.80%"),
])
def test_percentage_change_figures(pre, current, change):
    result = run("percentage_change", time="2024", type="YoY", pre_value=pre, current_value=current)

    assert json.loads(result.content)["change"] == change


@pytest.mark.parametrize(("pre", "current", "sentence"), [
    ("0", "5", "A change from 0 has no percentage: pre_value must not be zero."),
    ("n/a", "5", "pre_value 'n/a' is not a number; send the figure alone, e.g. \"28.89\"."),
    ("28,89", "5", "pre_value '28,89' is not a number; send the figure alone, e.g. \"28.89\"."),
    ("1", "Infinity", "current_value 'Infinity' is not a number; send the figure alone, e.g. \"28.89\"."),
    ("1e-30", "1e30", "The change from 1e-30 to 1e30 is too large to show."),
])
def test_percentage_change_refusals(pre, current, sentence):
    result = run("percentage_change", time="2024", type="YoY", pre_value=pre, current_value=current)

    assert result.error == sentence


# ---------------------------------------------------------------- current_time

def test_current_time_in_a_zone():
    before = datetime.now(ZoneInfo("Asia/Shanghai"))
    result = json.loads(run("current_time", timezone="Asia/Shanghai").content)
    now = datetime.fromisoformat(result["iso"])

    assert result["timezone"] == "Asia/Shanghai" and result["utc_offset"] == "+08:00"
    assert result["abbreviation"] == "CST"
    assert timedelta(seconds=-1) <= now - before.replace(microsecond=0) <= timedelta(seconds=5)
    assert result["date"] == now.date().isoformat() and result["weekday"] == now.strftime("%A")
    assert result["time"] == now.strftime("%H:%M:%S")


def test_current_time_defaults_to_utc():
    assert json.loads(run("current_time").content)["utc_offset"] == "+00:00"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "America", "/etc/passwd", "../../etc/passwd", ""])
def test_current_time_refuses_an_unknown_zone(zone):
    assert run("current_time", timezone=zone).error == (
        f"{zone!r} is not a time zone the server knows; use an IANA name such as Asia/Shanghai, "
        "Europe/London, America/New_York or UTC.")
