"""The built-in tools a model may call (issue 16): one module per tool, registered here.

    tool_specs(["calculator"])                    -> the request's `tools` list
    tool_run("calculator", '{"expression": "2+2"}') -> ToolResult(content, ok, error, elapsed_ms)
    await tool_run_async(name, arguments, timeout)  -> the same, off the event loop, with a limit

See chat/tools/registry.py for how calls are checked and run, docs/tools.md for adding a tool.
"""

from chat.tools import calculator, current_time, percentage_change
from chat.tools.registry import (
    DEFAULT_TIMEOUT,
    TOOLS,
    Tool,
    ToolError,
    ToolResult,
    tool_names,
    tool_register,
    tool_run,
    tool_run_async,
    tool_specs,
    tool_unregister,
)

for _module in (calculator, percentage_change, current_time):
    tool_register(_module.TOOL)

__all__ = [
    "DEFAULT_TIMEOUT", "TOOLS", "Tool", "ToolError", "ToolResult", "tool_names", "tool_register", "tool_run",
    "tool_run_async", "tool_specs", "tool_unregister",
]
