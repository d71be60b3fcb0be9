"""Reading conversations: the list, a thread, what a reconnecting tab missed, and the
shapes the page and the websocket get. Plain sync functions (the ORM); the writes that
change conversations are in chat/conversations.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from chat.attachments import attachment_to_dict
from chat.catalog import tokens_cost
from chat.models import Conversation, Message
from chat.refusals import conversation_missing


def conversation_list(*, user: AbstractBaseUser) -> list[Conversation]:
    return list(Conversation.objects.filter(user=user).only("id", "title", "model", "updated_at"))


def conversation_get(*, user: AbstractBaseUser, conversation_id: int | None, lock: bool = False) -> Conversation:
    conversations = Conversation.objects.select_for_update() if lock else Conversation.objects
    try:
        return conversations.get(pk=conversation_id, user=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise conversation_missing() from None


def message_thread(*, conversation: Conversation, leaf: Message | None = None) -> list[Message]:
    """The chain of messages ending at `leaf` (default: the newest), oldest first.

    One query: a conversation's messages are few enough to walk their parent links in memory.
    """
    messages = {m.pk: m for m in Message.objects.filter(conversation=conversation).prefetch_related("attachments")}
    if not messages:
        return []
    node = messages.get(leaf.pk) if leaf is not None else messages[max(messages)]
    chain = []
    while node is not None:
        chain.append(node)
        node = messages.get(node.parent_id)
    chain.reverse()
    return chain


# How many newer messages one `subscribe` sends at most; a tab further behind reloads.
CATCH_UP_MAX = 100


@dataclass
class CatchUp:
    """What a tab that (re)subscribes needs from the database: the conversation, the messages
    newer than those it has, the answers it names (as stored now), and which answers are
    still streaming (a running generation is asked for their text)."""

    conversation: dict[str, Any]
    new: list[dict[str, Any]]
    held: dict[int, dict[str, Any]]
    streaming: list[int]


def conversation_catch_up(
    *, user: AbstractBaseUser, conversation_id: int | None, held: list[int], after_id: int | None
) -> CatchUp:
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    messages = Message.objects.filter(conversation=conversation).prefetch_related("attachments")
    new = list(messages.filter(pk__gt=after_id)[:CATCH_UP_MAX]) if after_id is not None else []
    named = [pk for pk in held if pk not in {m.pk for m in new}]
    known = {m.pk: m for m in new} | (messages.in_bulk(named) if named else {})
    streaming = list(
        Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    return CatchUp(
        conversation=conversation_to_dict(conversation),
        new=[message_to_dict(m) for m in new],
        held={pk: message_to_dict(known[pk]) for pk in held if pk in known},
        streaming=streaming,
    )


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    usage = None
    if message.total_tokens is not None or message.prompt_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.total_tokens,
        }
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "finish_reason": message.finish_reason,
        "usage": usage,
        "error_code": message.error_code,
        "error_message": message.error_message,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "seq": message.seq,
        "attachments": [attachment_to_dict(a) for a in message.attachments.all()]
        if message.pk and message.role == Message.Role.USER
        else [],
        "notes": message.notes,
        "cost_usd": _cost(message),
        "tool_calls": message.tool_calls,
        "created_at": message.created_at.isoformat(),
    }


def _cost(message: Message) -> str | None:
    """The answer's price in US dollars, as a string (exact: JSON numbers are floats)."""
    if message.role != Message.Role.ASSISTANT:
        return None
    cost = tokens_cost(message.model, message.prompt_tokens, message.completion_tokens)
    return None if cost is None else f"{cost:.6f}"
