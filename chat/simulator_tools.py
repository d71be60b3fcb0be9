"""Tool use in the simulator (chat/simulator.py): when yi-large-fc calls tools, which, with
what arguments, and how the calls are streamed. Decided from the request alone, so that
tests and the offline app get the same answer every time:

- `[sim-call NAME {"arg": ...}]` in the last user message: call NAME with these
  arguments; several directives are several calls in one turn, in their order. NAME need
  not be among `tools` (a model may call a tool nobody offered: the caller's to refuse).
  Without the JSON object the arguments are placeholders from NAME's schema.
- Without a directive the question is read as a model would read it: the reference's
  revenue table with "MoM" and/or "YoY" becomes one call each to the function with the
  reference's parameters (type, pre_value, current_value), the figures taken from the
  table (`percentage_change` here, `calculator` in the reference's own example); an IANA
  time zone, or a question about the time or date, a call to the function with a
  `timezone` parameter; an arithmetic expression, a call to the one with an `expression`
  parameter. Failing those, the first function with placeholder arguments (a tool
  model offered tools calls one) unless `[sim tool_calls=0]` (it answers in text).
- tool_choice, in the reference's four forms: "none" never calls; "auto" (the default)
  as above; "required" as above, and the first function when nothing is asked for;
  {"type": "function", "function": {"name": N}} calls N alone (the directives' calls to
  N, or N with placeholders). "required" and a named function force a call on every
  request, also after tool results, as the reference defines them per request: a tool
  loop must send "auto" (or no tools) after the forced round, or it never ends.
- Rounds: after the results of a round of calls (the `role: tool` messages), "auto"
  answers in text, quoting every result of the last round, unless `[sim tool_rounds=N]`
  asks for N rounds of the same calls first (`tool_rounds=99` for a loop's round limit).
- `[sim broken=K]`: call K (from 1) of the first round has arguments that are not valid
  JSON (the last character is cut off), which the reference warns a model may send; the
  next rounds carry them whole, as a model that read the error would.

Calls stream as OpenAI's API streams them: per call, a delta with its index, id, type
and name (arguments ""), then its arguments in pieces of ARGUMENT_PIECE characters, one
delta each; finish_reason "tool_calls". Not streamed: `message.tool_calls` whole and
`content` null.

Requests are checked as OpenAI's API checks them (the reference does not say; a loop that
breaks these rules is wrong for an OpenAI-compatible provider either way): tool_choice
in one of its forms, a named or required choice only with `tools`, the named function
among them, and each assistant message's tool calls answered, right after it, by one
`role: tool` message per call id.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

TOOL_MODELS = {"yi-large-fc"}
ARGUMENT_PIECE = 8  # characters: a few tokens, so escapes and multi-byte text get split too
CALL_DIRECTIVE = re.compile(r"\[sim-call\s+([^\s\]{]+)\s*")
PLACEHOLDERS = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
MONTHS_SHORT = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_decoder = json.JSONDecoder()


class ToolRequestRefused(Exception):
    """A request the API would refuse with 400; the message is the sentence."""


# ---------------------------------------------------------------- reading the request

def call_directives_parse(text: str) -> tuple[list[tuple[str, dict | None]], str]:
    """The `[sim-call NAME {...}]` directives of `text` as (name, arguments or None), and
    the text without them."""
    calls, kept, position = [], [], 0
    while match := CALL_DIRECTIVE.search(text, position):
        name, end = match.group(1), match.end()
        arguments = None
        if text.startswith("{", end):
            try:
                arguments, end = _decoder.raw_decode(text, end)
            except ValueError:
                raise ToolRequestRefused(f"Input format error: the arguments of simulator directive "
                                         f"[sim-call {name} ...] are not a JSON object.") from None
            while end < len(text) and text[end].isspace():
                end += 1
        if not text.startswith("]", end):
            raise ToolRequestRefused(f"Input format error: simulator directive [sim-call {name} ...] must be "
                                     "[sim-call NAME] or [sim-call NAME {...JSON object...}].")
        calls.append((name, arguments))
        kept.append(text[position:match.start()])
        position = end + 1
    kept.append(text[position:])
    return calls, " ".join(kept)


def tool_request_check(tools: Any, tool_choice: Any, messages: list) -> None:
    names = _tools_check(tools)
    _tool_choice_check(tool_choice, names)
    _tool_messages_check(messages)


def _tools_check(tools: Any) -> list[str]:
    shape = 'tools must be a list of {"type": "function", "function": {"name": ..., "parameters": {...}}}.'
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ToolRequestRefused("Input format error: " + shape)
    names = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if (tool.get("type") if isinstance(tool, dict) else None) != "function" or not isinstance(function, dict) \
                or not isinstance(function.get("name"), str) or not function["name"]:
            raise ToolRequestRefused("Input format error: " + shape)
        names.append(function["name"])
    return names


def _tool_choice_check(choice: Any, names: list[str]) -> None:
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required":
        if not names:
            raise ToolRequestRefused('Input format error: tool_choice "required" needs tools.')
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    if (not isinstance(choice, dict) or choice.get("type") != "function" or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)):
        raise ToolRequestRefused('Input format error: tool_choice must be "auto", "none", "required" or '
                                 '{"type": "function", "function": {"name": ...}}.')
    if function["name"] not in names:
        raise ToolRequestRefused(f"Input format error: tool_choice names the function {function['name']!r}, "
                                 "which is not among tools.")


def _tool_messages_check(messages: list) -> None:
    waiting: list[str] = []  # call ids of the last assistant message not yet answered
    for number, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in waiting:
                raise ToolRequestRefused(
                    f"Input format error: messages[{number}] has role tool but answers no tool call of the "
                    f"assistant message before it (tool_call_id {call_id!r}).")
            waiting.remove(call_id)
            continue
        if waiting:
            raise ToolRequestRefused(
                f"Input format error: the tool calls {', '.join(waiting)} of an assistant message have no "
                f"role tool message answering them before messages[{number}].")
        if role == "assistant" and message.get("tool_calls") is not None:
            waiting = _calls_check(message["tool_calls"], number)
    if waiting:
        raise ToolRequestRefused(f"Input format error: the tool calls {', '.join(waiting)} of the last assistant "
                                 "message have no role tool message answering them.")


def _calls_check(calls: Any, number: int) -> list[str]:
    shape = (f"Input format error: messages[{number}].tool_calls must be a list of "
             '{"id": ..., "type": "function", "function": {"name": ..., "arguments": "..."}}.')
    if not isinstance(calls, list):
        raise ToolRequestRefused(shape)
    ids = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if (not isinstance(call, dict) or not isinstance(call.get("id"), str) or call.get("type") != "function"
                or not isinstance(function, dict) or not isinstance(function.get("name"), str)
                or not isinstance(function.get("arguments"), str)):
            raise ToolRequestRefused(shape)
        ids.append(call["id"])
    return ids


# ---------------------------------------------------------------- deciding the calls

def tool_calls_choose(request) -> list[dict] | None:
    """The calls this answer makes ({"id", "name", "arguments"}), or None to answer in text.
    `request` is the simulator's ChatRequest (chat/simulator_request.py)."""
    functions = [t["function"] for t in request.tools]
    choice = request.tool_choice
    if request.model not in TOOL_MODELS or not functions or choice == "none":
        return None
    rounds = _rounds_done(request.messages)
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    forced = choice == "required" or named is not None
    if not forced and (request.directives["tool_calls"] == 0 or rounds >= request.directives["tool_rounds"]):
        return None
    offered = functions if named is None else [f for f in functions if f["name"] == named]
    wanted = request.calls or _calls_read(request.question, offered)
    if named is not None:
        wanted = [c for c in wanted if c[0] == named] or [(named, None)]
    wanted = wanted or [(functions[0]["name"], None)]
    calls = []
    for name, arguments in wanted:
        if arguments is None:
            arguments = _placeholders(next((f for f in functions if f["name"] == name), {}))
        calls.append({"id": "call_" + secrets.token_hex(12), "name": name,
                      "arguments": json.dumps(arguments, ensure_ascii=False)})
    broken = request.directives["broken"]
    if rounds == 0 and broken is not None and 1 <= broken <= len(calls):
        calls[broken - 1]["arguments"] = calls[broken - 1]["arguments"][:-1]
    return calls


def _rounds_done(messages: list) -> int:
    """Rounds of calls since the last user message."""
    rounds = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            rounds += 1
    return rounds


def _placeholders(function: dict) -> dict:
    """A value for each of the schema's required properties."""
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    arguments = {}
    for name in schema.get("required") or []:
        spec = properties.get(name) or {}
        arguments[name] = spec["enum"][0] if spec.get("enum") else PLACEHOLDERS.get(spec.get("type"), "1")
    return arguments


def _with_parameters(functions: list[dict], *names: str) -> dict | None:
    for function in functions:
        properties = (function.get("parameters") or {}).get("properties") or {}
        if all(name in properties for name in names):
            return function
    return None


def _calls_read(question: str, functions: list[dict]) -> list[tuple[str, dict]]:
    """The calls a model would make for `question`, if it is one the simulator reads."""
    if function := _with_parameters(functions, "type", "pre_value", "current_value"):
        if calls := _changes_read(question, function):
            return calls
    if function := _with_parameters(functions, "timezone"):
        zone = re.search(r"\b(UTC|[A-Z][A-Za-z]{1,30}(?:/[A-Z][A-Za-z_+\-]{1,30}){1,2})\b", question)
        if zone:
            return [(function["name"], {"timezone": zone.group(1)})]
        if re.search(r"\b(time|date|today|weekday)\b|几点|日期|今天", question, re.IGNORECASE):
            return [(function["name"], {"timezone": "UTC"})]
    if function := _with_parameters(functions, "expression"):
        # Runs of arithmetic characters, trimmed by hand: a pattern that must end on a digit
        # backtracks over every long run, quadratic on a question of brackets.
        runs = (run.lstrip(" \t\n+*/^%×÷)").rstrip(" \t\n.+-*/^%×÷(")
                for run in re.findall(r"[\d\s.+\-*/^%()×÷]+", question))
        found = [run for run in runs if re.search(r"[\d)]\s*(\*\*|[-+*/^%×÷])\s*[\d(.]", run)
                 and not re.fullmatch(r"\d{4}-\d{1,2}(-\d{1,2})?", run)]  # a date, not a subtraction
        if found:
            return [(function["name"], {"expression": max(found, key=len)})]
    return []


def _changes_read(question: str, function: dict) -> list[tuple[str, dict]]:
    """The reference's question: a table of months and figures, and MoM and/or YoY of one
    month (named before the table, else the table's last)."""
    rows = dict(re.findall(r"\|\s*(\d{4}-\d{2})\s*\|\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*\|", question))
    if not rows:
        return []
    asked = question.split("|", 1)[0]
    month = list(rows)[-1]
    if found := re.search(r"\b(" + "|".join(MONTHS_SHORT) + r")[a-z]*\.?\s+(\d{4})\b", asked, re.IGNORECASE):
        month = f"{found.group(2)}-{MONTHS_SHORT.index(found.group(1).lower()) + 1:02d}"
    elif found := re.search(r"(\d{4})(?:-|年)(\d{1,2})", asked):
        month = f"{found.group(1)}-{int(found.group(2)):02d}"
    year, number = int(month[:4]), int(month[5:])
    before = {"MoM": f"{year - (number == 1)}-{(number - 2) % 12 + 1:02d}", "YoY": f"{year - 1}-{number:02d}"}
    kinds = []
    if re.search(r"\bMoM\b|month[- ]over[- ]month|环比", question, re.IGNORECASE):
        kinds.append("MoM")
    if re.search(r"\bYoY\b|year[- ]over[- ]year|同比", question, re.IGNORECASE):
        kinds.append("YoY")
    return [(function["name"], {"time": month, "type": kind, "pre_value": rows[before[kind]],
                                "current_value": rows[month]})
            for kind in kinds if month in rows and before[kind] in rows]


# ---------------------------------------------------------------- the answer

def tool_call_deltas(calls: list[dict]) -> list[dict]:
    """The stream's deltas for `calls`, one chunk each (see the module's doc)."""
    deltas = []
    for index, call in enumerate(calls):
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["name"], "arguments": ""}}]})
        arguments = call["arguments"]
        for start in range(0, len(arguments), ARGUMENT_PIECE):
            deltas.append({"tool_calls": [{"index": index,
                                           "function": {"arguments": arguments[start:start + ARGUMENT_PIECE]}}]})
    return deltas


def tool_calls_message(calls: list[dict]) -> list[dict]:
    """`message.tool_calls` of a completion that is not streamed."""
    return [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in calls]


def tool_results_text(messages: list, text_of) -> str | None:
    """The answer after a round of tool results: each result quoted, in the order of the
    calls; None when the last message is not a tool result. `text_of` reads a content."""
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message)
    if not results:
        return None
    names = {call.get("id"): call.get("function", {}).get("name")
             for message in messages for call in message.get("tool_calls") or [] if isinstance(call, dict)}
    quoted = [f"The tool `{r.get('name') or names.get(r.get('tool_call_id')) or 'tool'}` returned:\n\n```\n"
              f"{text_of(r.get('content'))}\n```" for r in results]
    ending = ("That is the result" if len(results) == 1 else "Those are the results") + \
        ", as read by the offline simulator."
    return "\n\n".join(quoted) + "\n\n" + ending
