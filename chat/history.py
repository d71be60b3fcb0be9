"""Reading conversations: the list, a thread, what a reconnecting tab missed, and the
shapes the page and the websocket get. Plain sync functions (the ORM); the writes that
change conversations are in chat/conversations.py (with chat/exchanges.py),
chat/reruns.py and chat/organise.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, Q

from chat.attachments import attachment_to_dict
from chat.credentials import key_choice_of
from chat.models import Attachment, Conversation, Message
from chat.refusals import conversation_missing


# Messages' images, read in one query into plain lists (`message.images`): Django's own
# prefetch makes a queryset per message, which cost 12-46 ms on a 500-message thread
# (docs/benchmarks.md, "History").
IMAGES = Prefetch("attachments", to_attr="images")


def message_images(message: Message) -> list[Attachment]:
    """A message's images, in order: from `IMAGES` when it was read with them."""
    images = getattr(message, "images", None)
    return images if images is not None else list(message.attachments.all())


# Conversations per page of the list; the page asks for the next as it scrolls.
PAGE_SIZE = 50


@dataclass(frozen=True)
class ListCursor:
    """Where a page of the list ends, in its order (pinned first, then newest first)."""

    pinned: bool
    updated_at: datetime
    id: int

    def encode(self) -> str:
        return f"{int(self.pinned)}_{self.updated_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, value: str) -> ListCursor | None:
        """None for anything that is not a cursor this app wrote."""
        try:
            pinned, updated_at, pk = value.split("_")
            cursor = cls(pinned == "1", datetime.fromisoformat(updated_at), int(pk))
        except (ValueError, TypeError, AttributeError):
            return None
        return cursor if pinned in ("0", "1") and cursor.updated_at.tzinfo is not None and cursor.id > 0 else None


def conversation_list(
    *, user: AbstractBaseUser, archived: bool = False, after: ListCursor | None = None, limit: int = PAGE_SIZE
) -> tuple[list[Conversation], ListCursor | None]:
    """One page of the user's conversations (archived ones apart), pinned ones first, then
    newest first, each marked if it holds images (`has_images`); and the cursor of the
    next page. Two queries whatever the number of conversations: the page (which walks the
    index user, archived, pinned, updated_at and stops), and which of its rows hold images."""
    # `archived__in`, not `archived=`: Django writes the latter `NOT "archived"` on SQLite,
    # which SQLite cannot match to the index: it read and sorted all of a person's rows.
    rows = Conversation.objects.filter(user=user, archived__in=[archived])
    if after is not None:
        rows = rows.filter(
            Q(pinned__lt=after.pinned)
            | Q(pinned=after.pinned, updated_at__lt=after.updated_at)
            | Q(pinned=after.pinned, updated_at=after.updated_at, id__lt=after.id)
        )
    rows = rows.only(
        "id", "title", "model", "pinned", "archived", "api_key", "server_key", "updated_at", "created_at"
    ).order_by("-pinned", "-updated_at", "-id")[: limit + 1]
    page = list(rows)
    following = None
    if len(page) > limit:
        page = page[:limit]
        following = ListCursor(page[-1].pinned, page[-1].updated_at, page[-1].pk)
    # For the page's rows only: as a subquery per row it made PostgreSQL read every
    # attachment of every user.
    with_images = set(
        Attachment.objects.filter(message__conversation__in=[c.pk for c in page]).values_list(
            "message__conversation", flat=True
        )
    ) if page else set()
    for conversation in page:
        conversation.has_images = conversation.pk in with_images
    return page, following


def conversation_get(*, user: AbstractBaseUser, conversation_id: int | None, lock: bool = False) -> Conversation:
    conversations = Conversation.objects.select_for_update() if lock else Conversation.objects
    try:
        return conversations.get(pk=conversation_id, user=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise conversation_missing() from None


class _Tree:
    """A conversation's messages as links alone (id, parent, role): enough to find the
    branch shown, a message's versions and the newest message below one, in memory."""

    def __init__(self, links: list[tuple[int, int | None, str]]):
        self.parent = {pk: parent for pk, parent, _ in links}
        self.role = {pk: role for pk, _, role in links}
        self.children: dict[int | None, list[int]] = {}
        for pk, parent, _ in sorted(links):  # oldest version first
            self.children.setdefault(parent, []).append(pk)

    @classmethod
    def read(cls, conversation: Conversation) -> _Tree:
        """One query, no text."""
        return cls(list(Message.objects.filter(conversation=conversation).values_list("id", "parent_id", "role")))

    def chain(self, leaf_id: int | None) -> list[int]:
        """The ids from the first message to `leaf_id` (the newest one if it is not here)."""
        if not self.parent:
            return []
        node = leaf_id if leaf_id in self.parent else max(self.parent)
        chain = []
        while node is not None:
            chain.append(node)
            node = self.parent.get(node)
        return chain[::-1]

    def versions(self, pk: int) -> list[int]:
        return [other for other in self.children[self.parent[pk]] if self.role[other] == self.role[pk]]

    def newest_below(self, pk: int) -> int:
        while self.children.get(pk):
            pk = max(self.children[pk])
        return pk


def message_thread(*, conversation: Conversation, leaf: Message | None = None) -> list[Message]:
    """The chain of messages ending at `leaf` (default: the conversation's own leaf, the
    branch it shows; else the newest), oldest first. Each message gets `sibling_ids`: the
    versions of it (itself included, oldest first) the page can step between.

    Two queries (the messages, their attachments): a conversation's messages are few enough
    to walk their parent links in memory.
    """
    messages = {m.pk: m for m in Message.objects.filter(conversation=conversation).prefetch_related(IMAGES)}
    tree = _Tree([(m.pk, m.parent_id, m.role) for m in messages.values()])
    chain = [messages[pk] for pk in tree.chain(leaf.pk if leaf is not None else conversation.leaf_id)]
    for message in chain:
        message.sibling_ids = tree.versions(message.pk)
    return chain


def message_versions(message: Message) -> list[int]:
    """The ids of `message`'s versions (same parent, same role), oldest first: for one
    message just written, without reading the whole conversation's links."""
    return list(
        Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id, role=message.role)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def branch_leaf(*, conversation: Conversation, message_id: int | None) -> Message | None:
    """The leaf of the branch through `message_id` (one of the conversation's messages):
    from it, the newest child at each step. None if it is not the conversation's."""
    tree = _Tree.read(conversation)
    if message_id not in tree.parent:
        return None
    return Message.objects.get(pk=tree.newest_below(message_id))


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
    # The whole thread, when the tab shows another one than the conversation's (its
    # branch was switched, or messages deleted, while the tab was away): it replaces all.
    thread: list[dict[str, Any]] | None = None


def conversation_catch_up(
    *,
    user: AbstractBaseUser,
    conversation_id: int | None,
    held: list[int],
    after_id: int | None,
    shown: list[int] | None = None,
) -> CatchUp:
    """`shown`: the ids of the messages the tab shows, oldest first, if it says."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    # The links first (no text): a tab subscribes at every reconnect and after 3 s of
    # silence, and reading a long thread's every message each time cost the one database
    # thread tens of milliseconds; only the messages the tab lacks are read whole.
    tree = _Tree.read(conversation)
    chain = tree.chain(conversation.leaf_id)
    on_thread = set(chain)
    streaming = list(
        Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING).values_list("pk", flat=True)
    )
    if shown is not None and any(pk not in on_thread for pk in shown):
        thread = message_thread(conversation=conversation)
        known = {m.pk: m for m in thread}
        new_ids: list[int] = []
    else:
        thread = None
        new_ids = [pk for pk in chain if pk > after_id][:CATCH_UP_MAX] if after_id is not None else []
        known = {}
    wanted = [pk for pk in [*new_ids, *held] if pk not in known]
    if wanted:
        known |= Message.objects.filter(conversation=conversation).prefetch_related(IMAGES).in_bulk(wanted)
    for pk in new_ids:
        known[pk].sibling_ids = tree.versions(pk)
    return CatchUp(
        conversation=conversation_to_dict(conversation),
        new=[message_to_dict(known[pk]) for pk in new_ids],
        held={pk: message_to_dict(known[pk]) for pk in held if pk in known},
        streaming=streaming,
        thread=[message_to_dict(m) for m in thread] if thread is not None else None,
    )


def conversation_updated_frame(conversation: Conversation) -> dict[str, Any]:
    """What every tab of the user hears when a conversation is renamed, pinned or archived."""
    return {"type": "conversation_updated", "conversation": conversation_to_dict(conversation)}


def conversation_row_to_dict(conversation: Conversation) -> dict[str, Any]:
    """A conversation as a row of the list shows it (from `conversation_list`, which reads
    no system prompt). `has_images` is None where it was not asked (a frame, say)."""
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "has_images": getattr(conversation, "has_images", None),
        "key_id": key_choice_of(conversation),
        "updated_at": conversation.updated_at.isoformat(),
    }


def conversation_to_dict(conversation: Conversation) -> dict[str, Any]:
    """The whole conversation: its row, its settings (system prompt and sampling
    parameters: the page's Settings show them), its tool settings (the page's Tools
    control shows them), when it began."""
    return {
        **conversation_row_to_dict(conversation),
        "system_prompt": conversation.system_prompt,
        "params": conversation.params,
        "tools": conversation.tools,
        "tool_choice": conversation.tool_choice,
        "created_at": conversation.created_at.isoformat(),
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    """A message as frames and the page carry it, its notes and error's sentence by code:
    `chat.sentences.message_said` says them in the reader's language where it leaves the server."""
    usage = None
    if message.total_tokens is not None or message.prompt_tokens is not None:
        usage = {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.total_tokens,
        }
        if message.usage_estimated:  # the app's estimate: it ended before the upstream's usage (chat/endings.py)
            usage["estimated"] = True
    return {
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "parent_id": message.parent_id,
        "client_id": message.client_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "params": message.params,
        "key_id": message.api_key_id,  # the key that paid (None: the server's, or one since deleted)
        "finish_reason": message.finish_reason,
        "usage": usage,
        "error_code": message.error_code,
        "error_message": message.error_message,
        "error_sentence": message.error_sentence,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "seq": message.seq,
        "attachments": [attachment_to_dict(a) for a in message_images(message)]
        if message.pk and message.role == Message.Role.USER
        else [],
        "notes": message.notes,
        "cost_usd": _cost(message),
        "sibling_ids": getattr(message, "sibling_ids", [message.pk]),
        "tool_calls": message.tool_calls,
        # A `role: tool` message: the call it answers (its card sits in that call's answer).
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "created_at": message.created_at.isoformat(),
    }


def _cost(message: Message) -> str | None:
    """The answer's price in US dollars as stored when it ended (chat/endings.py), as a
    string (exact: JSON numbers are floats)."""
    if message.role != Message.Role.ASSISTANT or message.cost_usd is None:
        return None
    return f"{message.cost_usd:.6f}"
