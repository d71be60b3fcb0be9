"""Running the tool calls an answer asks for, inside its generation (chat/relay.py): each
call off the event loop, its result stored as its tool message's ending; the calls left
unanswered when a run stops or runs out of rounds; and the request that hands the results
to the model. What a round stores before its calls run is chat/tool_rounds.py; the tools
themselves are chat/tools.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings

from chat.endings import messages_finish_batched
from chat.models import Message
from chat.tools import tool_run_async
from chat.upkeep import endings_tell
from chat.upstream_events import ToolCallDelta

# Tool rounds one answer may run before it must answer in text (chat/tool_rounds.py).
TOOL_ROUNDS_MAX = 5


def tool_call_merge(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.name:
        call["function"]["name"] += delta.name
    call["function"]["arguments"] += delta.arguments


async def tool_call_run(message: Message, call: dict, offered: list[str], results: dict[int, str]) -> None:
    """Run one call off the event loop and store its result; every failure is a result
    that says what went wrong (chat/tools), for the model to recover from."""
    function = call.get("function") or {}
    result = await tool_run_async(
        str(function.get("name", "")), str(function.get("arguments", "")), settings.TOOL_TIMEOUT, offered=offered
    )
    results[message.pk] = result.content
    fields = {"status": Message.Status.COMPLETE, "content": result.content,
              "duration_ms": round(result.elapsed_ms), "error_code": "" if result.ok else "tool_failed",
              "error_message": result.error}
    events = await asyncio.shield(messages_finish_batched((message.pk, fields)))
    await endings_tell(events)


async def tools_end(messages: list[Message], results: dict[int, str], content: str, status: str) -> None:
    """End the tool messages that have no result yet with `content` (each call must be
    answered for the thread to be sent again)."""
    endings = [(m.pk, {"status": status, "content": content}) for m in messages if m.pk not in results]
    for events in await asyncio.gather(
        *(messages_finish_batched(ending) for ending in endings), return_exceptions=True
    ):
        if isinstance(events, list):
            await endings_tell(events)


def tool_round_request(
    request: dict[str, Any], fields: dict[str, Any], calls: list[dict], tool_messages: list[Message],
    results: dict[int, str], rounds: int,
) -> dict[str, Any]:
    """The request for the answer that follows round `rounds`: the thread with the calls
    the answer (`fields`) asked for and each call's result."""
    asked = {"role": "assistant", "content": fields.get("content") or None, "tool_calls": calls}
    answered = [
        {"role": "tool", "tool_call_id": message.tool_call_id, "name": message.name, "content": results[message.pk]}
        for message in tool_messages
    ]
    # A forced choice ("required", a named function) forces every request: after its
    # round the model chooses; the last round's request may not call at all.
    tool_choice = request.get("tool_choice")
    if tool_choice not in ("auto", "none"):
        tool_choice = "auto"
    if rounds == TOOL_ROUNDS_MAX:
        tool_choice = "none"
    return {**request, "messages": [*request["messages"], asked, *answered], "tool_choice": tool_choice}
