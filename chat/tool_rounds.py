"""Storing a round of tool calls: the writes the relay (chat/relay.py) makes when an answer
ends by asking for tools.

One answer with tools spans several messages: the assistant's calls, one `role: tool`
message per call with its result, and the assistant again. The next answer is stored
(streaming, empty) together with the tool messages, before the calls run, so that a
message of the run is streaming from the first request to the last ending: the
conversation stays busy for other sends, Stop finds the run, and a process that dies
mid-round leaves messages the sweep ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from chat.events import Event, conversation_group
from chat.history import message_to_dict
from chat.models import Conversation, Message

TOOL_STOPPED = '{"error": "Stopped before this tool finished."}'
TOOL_NOT_RUN = '{"error": "Not run: this answer reached its limit of tool rounds."}'


@dataclass
class ToolRound:
    """What a round stored: the tool messages, in the order of the calls, and the answer
    that follows them; and the frames that show them to every tab."""

    tool_messages: list[Message]
    next_answer: Message | None
    events: list[Event]


def tool_round_store(*, answer_id: int, calls: list[dict[str, Any]], answer_next: bool) -> ToolRound:
    """After answer `answer_id` asked for `calls`: one streaming tool message per call,
    chained after it, and (with `answer_next`) the empty answer that will read their
    results, on the same model, parameters, key and run; the conversation shows it."""
    with transaction.atomic():
        answer = Message.objects.select_related("conversation").get(pk=answer_id)
        now = timezone.now()
        parent = answer
        tool_messages = []
        for call in calls:
            parent = Message.objects.create(
                conversation_id=answer.conversation_id, parent=parent, role=Message.Role.TOOL,
                status=Message.Status.STREAMING, tool_call_id=call.get("id", ""),
                name=str(call.get("function", {}).get("name", ""))[:100], heartbeat_at=now, run_id=answer.run_id,
            )
            tool_messages.append(parent)
        following = None
        if answer_next:
            following = Message.objects.create(
                conversation_id=answer.conversation_id, parent=parent, role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING, model=answer.model, params=answer.params,
                api_key_id=answer.api_key_id, heartbeat_at=now, run_id=answer.run_id,
            )
        Conversation.objects.filter(pk=answer.conversation_id).update(leaf=following or parent)
    group = conversation_group(answer.conversation_id)
    events = [(group, {"type": "message", "message": message_to_dict(m)}) for m in [*tool_messages, following] if m]
    return ToolRound(tool_messages, following, events)
