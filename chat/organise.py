"""Keeping the list in order: renaming, pinning, archiving and deleting conversations;
and which branch of its thread a conversation shows.

Writes, like chat/conversations.py: each returns the frames every tab must hear (the
user's sidebars, a tab showing a deleted conversation, the tabs of a conversation whose
branch changed), for the async caller to broadcast once committed. None of these moves a
conversation's date: they are saved with `update`, which leaves `updated_at` be, so the
list's order is the order of use.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext_noop

from chat.input_checks import BAD_FRAME, text_storable
from chat.events import Event, user_group
from chat.exchanges import thread_event
from chat.history import branch_leaf, conversation_updated_frame, message_thread
from chat.models import Conversation, Message
from chat.refusals import SendRefused, conversation_missing

TITLE_MAX_CHARS = 200
# At most this many conversations in one change (a selection; "everything" goes in pages).
CHANGE_MAX = 1000


def conversations_change(
    *, user: AbstractBaseUser, conversation_ids: list[int], title: Any = None, pinned: Any = None, archived: Any = None
) -> list[Event]:
    """Rename (one conversation), pin or unpin, archive or unarchive the user's own
    conversations among `conversation_ids`."""
    fields: dict[str, Any] = {}
    if title is not None:
        if len(conversation_ids) != 1:
            raise SendRefused("bad_frame", BAD_FRAME)
        fields.update(title=title_check(title), title_source=Conversation.TitleSource.USER)
    for name, value in (("pinned", pinned), ("archived", archived)):
        if value is not None:
            if not isinstance(value, bool):
                raise SendRefused("bad_frame", BAD_FRAME)
            fields[name] = value
    if not fields:
        raise SendRefused("bad_frame", BAD_FRAME)
    with transaction.atomic():
        owned = _owned(user, conversation_ids)
        owned.update(**fields)
        changed = list(owned)
    return [(user_group(user.pk), conversation_updated_frame(c)) for c in changed]


def conversations_delete(*, user: AbstractBaseUser, conversation_ids: list[int]) -> tuple[list[int], list[Event]]:
    """Delete the user's own conversations among `conversation_ids`, with their messages
    and images (the files go once nothing else names them: chat/signals.py). Returns the
    answers that were streaming in them, for the caller to stop, and the frames."""
    with transaction.atomic():
        owned = _owned(user, conversation_ids)
        ids = list(owned.values_list("pk", flat=True))
        streaming = list(
            Message.objects.filter(conversation_id__in=ids, status=Message.Status.STREAMING).values_list("pk", flat=True)
        )
        owned.delete()
    frames = [(user_group(user.pk), {"type": "conversation_deleted", "conversation_id": pk}) for pk in ids]
    return streaming, frames


def conversations_streaming(*, user: AbstractBaseUser, conversation_ids: list[int]) -> list[int]:
    """The answers streaming in the user's own conversations among `conversation_ids`."""
    return list(
        Message.objects.filter(
            conversation__user=user, conversation_id__in=conversation_ids, status=Message.Status.STREAMING
        ).values_list("pk", flat=True)
    )


def branch_switch(*, user: AbstractBaseUser, message_id: int | None) -> list[Event]:
    """Show the branch through `message_id` (a version of a question or an answer), down
    to its newest message; every tab of the conversation gets the thread."""
    message = Message.objects.filter(pk=message_id, conversation__user=user).select_related("conversation").first()
    if message is None:
        raise SendRefused("not_found", gettext_noop("That message does not exist or is not yours."))
    conversation = message.conversation
    leaf = branch_leaf(conversation=conversation, message_id=message.pk)
    Conversation.objects.filter(pk=conversation.pk).update(leaf=leaf)  # not a change of date
    conversation.leaf_id = leaf.pk
    return [thread_event(conversation, message_thread(conversation=conversation))]


def title_check(title: Any) -> str:
    """A title as a person may set it: one line, not empty, at most TITLE_MAX_CHARS."""
    if not isinstance(title, str) or not title.strip():
        raise SendRefused("bad_title", gettext_noop("Type a title, or press Esc to keep the old one."))
    title = " ".join(title.split())
    if len(title) > TITLE_MAX_CHARS:
        raise SendRefused(
            "bad_title", gettext_noop("That title is too long (%(count)s characters; the limit is %(limit)s)."),
            params={"count": len(title), "limit": TITLE_MAX_CHARS})
    if not text_storable(title):
        raise SendRefused(
            "bad_title", gettext_noop("That title contains a character that cannot be stored. Remove it."))
    return title


def _owned(user: AbstractBaseUser, conversation_ids: list[int]):
    if not conversation_ids or len(conversation_ids) > CHANGE_MAX:
        raise SendRefused("bad_frame", BAD_FRAME)
    owned = Conversation.objects.filter(user=user, pk__in=conversation_ids)
    if not owned.exists():
        raise conversation_missing()
    return owned
