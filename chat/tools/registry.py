"""The registry of built-in tools: what the model is offered, and running what it asks for.

A tool is a plain Python function with a JSON Schema for its keyword arguments
(docs/tools.md). The model's side of a call is untrusted text: the reference warns that
"the JSON response may not always be valid", the model may name a tool nobody offered,
leave out a parameter or give one of the wrong type, and the function itself may fail.
`tool_run` turns each of these into a `ToolResult` whose `content` (sent back to the
model as the `role: tool` message) says in one sentence what went wrong and how to call
the tool instead, so the model can try again; nothing is raised to the caller.

Running with a time limit (`tool_run_async`): in a thread of a small pool of our own,
abandoned when the limit passes. A thread cannot be stopped from outside, so an
abandoned call runs on to its end, and while it computes in Python it takes its share of
the GIL from the event loop's thread (every relayed answer slows a little). That is
acceptable only because every built-in tool is bounded by construction, and a new tool
must be too (docs/tools.md, "Limits"):
- the calculator checks sizes *before* an operation (exponent, magnitude, nesting),
  and computes in Decimal at a fixed precision, so no single step is long; this
  matters beyond the thread question, because one long C-level operation (a big
  integer power) holds the GIL and would stall the event loop's thread as well, which
  no timeout of any kind in this process could prevent;
- the others do a constant amount of work.
A process pool would make a runaway call truly cancellable (kill the worker), but costs
a process start or a standing pool per server process, pickling of every call, and a
fork of a process that runs an event loop and threads; for tools that are bounded
anyway it buys nothing. A tool that might not be bounded (a network call, a parser of
user-sized input) must carry its own limit (e.g. an HTTP timeout) rather than rely on
being abandoned. The pool has a few threads so that a slow call does not hold up
others; a call that waits for a free thread counts that wait against its limit.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds
# Arguments longer than this are refused before parsing: no built-in tool needs more,
# and the model's text is read on the server.
ARGUMENTS_MAX_CHARS = 20_000
# Schema failures named in one result; the model fixes them a few at a time.
ERRORS_SHOWN = 3
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool")


class ToolError(Exception):
    """Raised by a tool for a failure the model can act on; its message is one sentence
    that reaches the model (and the page) as is."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the function's keyword arguments
    function: Callable[..., Any]  # returns a JSON-able dict (or a str), raises ToolError

    def spec(self) -> dict[str, Any]:
        """The entry of a request's `tools` list, as the reference shows it."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description, "parameters": copy.deepcopy(self.parameters)}}


@dataclass(frozen=True)
class ToolResult:
    content: str  # what the model is sent as the `role: tool` message
    ok: bool
    error: str = ""  # one sentence when not ok
    elapsed_ms: float = 0.0


TOOLS: dict[str, Tool] = {}
_validators: dict[str, Draft202012Validator] = {}


def tool_register(tool: Tool) -> Tool:
    """Add `tool` to the registry; its schema is checked here, once, so that a typo in
    one fails at start-up rather than on the model's first call."""
    Draft202012Validator.check_schema(tool.parameters)
    if tool.parameters.get("type") != "object":
        raise ValueError(f"{tool.name}: parameters must be a JSON Schema of type object")
    TOOLS[tool.name] = tool
    _validators[tool.name] = Draft202012Validator(tool.parameters)
    return tool


def tool_unregister(name: str) -> None:
    TOOLS.pop(name, None)
    _validators.pop(name, None)


def tool_names() -> list[str]:
    return sorted(TOOLS)


def tool_specs(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The `tools` list of a request offering `names` (all tools when None), in the
    order given. An unknown name is a programming error: KeyError."""
    chosen = tool_names() if names is None else list(names)
    return [TOOLS[name].spec() for name in chosen]


def tool_run(name: str, arguments: str, *, offered: Iterable[str] | None = None) -> ToolResult:
    """Run the tool `name` with `arguments`, the JSON text of the model's call; every
    failure is a result (see the module's doc), never an exception. `offered`: the names
    the request offered (default: every tool); a call to another is refused like an
    unknown name, since the person did not turn it on."""
    start = time.perf_counter()
    try:
        content = _call(name, arguments, tool_names() if offered is None else sorted(offered))
    except ToolError as refusal:
        return _failure(str(refusal), start)
    except Exception as error:  # the tool's own bug: the model is told, the log keeps the traceback
        logger.exception("tool %s failed", name)
        return _failure(f"The tool {name} failed: {type(error).__name__}: {_clip(str(error))}.", start)
    return ToolResult(content=content, ok=True, elapsed_ms=_ms_since(start))


async def tool_run_async(name: str, arguments: str, timeout: float = DEFAULT_TIMEOUT, *,
                         offered: Iterable[str] | None = None) -> ToolResult:
    """`tool_run` in the tools' thread pool, given up after `timeout` seconds (the
    result then says so). The event loop is free meanwhile. Cancelling the caller
    (Stop) cancels the wait and raises CancelledError; the thread finishes the call on
    its own, and its result is dropped."""
    start = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        call = functools.partial(tool_run, name, arguments, offered=offered)
        return await asyncio.wait_for(loop.run_in_executor(_pool, call), timeout)
    except TimeoutError:
        logger.warning("tool %s took longer than %s s; its result will be dropped", name, timeout)
        return _failure(f"The tool {name} took longer than {timeout:g} seconds and was stopped; "
                        "try a smaller or simpler request.", start)


def _call(name: str, arguments: str, offered: list[str]) -> str:
    tool = TOOLS.get(name) if name in offered else None
    if tool is None:
        known = ", ".join(offered) or "none"
        raise ToolError(f"There is no tool named {_clip(name)!r}; the tools are: {known}.")
    if len(arguments) > ARGUMENTS_MAX_CHARS:
        raise ToolError(f"The arguments of {name} are {len(arguments):,} characters long; "
                        f"the limit is {ARGUMENTS_MAX_CHARS:,}.")
    values = _arguments_parse(tool, arguments)
    errors = sorted(_validators[name].iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        described = "; ".join(_schema_error(e) for e in errors[:ERRORS_SHOWN])
        raise ToolError(f"The arguments do not fit {name}'s parameters: {described}.")
    result = tool.function(**values)
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def _arguments_parse(tool: Tool, arguments: str) -> dict[str, Any]:
    # Models send "" for a call without arguments as often as "{}".
    if not arguments.strip():
        return {}
    try:
        values = json.loads(arguments)
    except ValueError as error:
        raise ToolError(f"The arguments of {tool.name} are not valid JSON ({error}); "
                        "send them as one JSON object, e.g. " + _example(tool) + ".") from None
    if not isinstance(values, dict):
        raise ToolError(f"The arguments of {tool.name} must be a JSON object, e.g. {_example(tool)}, "
                        f"not {type(values).__name__}.")
    return values


def _example(tool: Tool) -> str:
    """A call's arguments in words: the required parameters with a placeholder each."""
    required = tool.parameters.get("required") or []
    return "{" + ", ".join(f'"{p}": ...' for p in required) + "}"


def _schema_error(error) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where}: {_clip(error.message)}" if where else _clip(error.message)


def _failure(sentence: str, start: float) -> ToolResult:
    return ToolResult(content=json.dumps({"error": sentence}, ensure_ascii=False), ok=False,
                      error=sentence, elapsed_ms=_ms_since(start))


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
