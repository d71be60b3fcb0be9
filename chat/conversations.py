"""Conversations' writes as the socket asks for them: sends, stored in batches (a send
may be an edit: a new version of an earlier question). How one exchange (a question and
its empty answer) is stored and its request planned is chat/exchanges.py; the per-person
limits a send may meet, chat/limits.py (the reads are chat/history.py; what a send must be,
chat/input_checks.py; retries and continues, chat/reruns.py; how answers end,
chat/endings.py; the list's own changes and branch switches, chat/organise.py).

Plain sync functions (the ORM), called from views directly and from async code through
`database_sync_to_async`. A write that browsers must hear about returns its frames as
(group, frame) events; the async caller broadcasts them once the transaction has
committed (and, for a send, once the sending socket has joined the conversation's group).
Broadcasting from inside the database thread would hold that one thread while the
event loop delivers, and every socket's delta would queue behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from chat.credentials import KeyChoice
from chat.exchanges import Exchange, conversations_start, exchange_append
from chat.limits import UserUsage
from chat.models import Message
from chat.outages import DATABASE_UNAVAILABLE, database_outage
from chat.refusals import SendRefused

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Send:
    """One `send` frame, checked (send_validate, params_validate), not yet stored.
    `client_id` is at most 64 characters (its column's length): the consumer cuts it."""

    user: AbstractBaseUser
    conversation_id: int | None
    text: str
    model: str
    client_id: str = ""
    # The settings the send names (params_validate: None for a parameter set back to the
    # API's default; system_prompt None: left out): the conversation keeps them from now on.
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    attachment_ids: tuple[int, ...] = ()  # the sender's unsent uploads, in order
    # The API key the conversation uses from now on (chat/credentials.py): one of the
    # user's, the server's (SERVER_KEY), or None: the user's default, else the server's.
    key_id: KeyChoice = None
    # Tools on or off, and the tool_choice, from now on; None: as the conversation has them.
    tools: bool | None = None
    tool_choice: Any = None
    # An earlier question this one is a new version of: it goes beside it (a branch),
    # with its images, and the conversation shows the new branch.
    edit_of: int | None = None


@dataclass(frozen=True)
class Resent:
    """A send whose `client_id` was already stored: its question, to answer the tab with
    that send's real state instead of running it again."""

    conversation_id: int
    question_id: int


# What storing one send gave: its exchange, the earlier send a repeated `client_id` names,
# None for the same `client_id` twice in one batch, the refusal to tell the page, or the
# error that stopped it (raised to its caller only).
SendOutcome = Exchange | Resent | SendRefused | Exception | None


def exchanges_send(sends: list[Send]) -> list[SendOutcome]:
    """Store sends that arrived together, in one transaction; one outcome per send, in order.

    A send stores a user message and the empty answer a generation will fill.
    `conversation_id` None starts a new conversation titled after the message; those are
    stored with one INSERT per table for the whole batch, since a burst of people pressing
    Enter at once otherwise queues one send at a time in the one database thread. A
    `client_id` this user already stored gives that send (`Resent`: a resend after a
    reconnect). A send to a conversation whose answer is still streaming is refused: two
    generations writing one thread would interleave.
    """
    outcomes: list[SendOutcome] = [None] * len(sends)
    with transaction.atomic():
        stored = _client_ids_stored(sends)
        usage = UserUsage.read({send.user.pk for send in sends})
        taken: set[tuple[int, str]] = set()  # client_ids stored by this batch
        new: list[int] = []
        for i, send in enumerate(sends):
            key = (send.user.pk, send.client_id)
            if send.client_id and (key in stored or key in taken):
                outcomes[i] = stored.get(key)
                continue
            if refused := usage.refusal(send.user.pk, sending=True):
                outcomes[i] = refused
                continue
            if send.conversation_id is None:
                taken.add(key)
                new.append(i)
                usage.count(send.user.pk, sending=True)
                continue
            outcomes[i] = _alone(exchange_append, send)
            if isinstance(outcomes[i], Exchange):
                taken.add(key)
                usage.count(send.user.pk, sending=True)
        if new:
            try:
                with transaction.atomic():
                    started = conversations_start([sends[i] for i in new])
            except Exception:
                # One send that cannot be stored must not fail the others: one by one, then.
                started = [_alone(lambda send: conversations_start([send])[0], sends[i]) for i in new]
            for i, outcome in zip(new, started):
                outcomes[i] = outcome
    return outcomes


def _alone(store: Callable[[Send], Exchange], send: Send) -> SendOutcome:
    """`store(send)` in a savepoint of its own: its refusal or its error is its outcome
    (raised to its caller only), and the other sends of the batch go on."""
    try:
        with transaction.atomic():
            return store(send)
    except SendRefused as refused:
        return refused
    except IntegrityError:
        return None  # the same client_id, sent twice at the same moment from two processes
    except DATABASE_UNAVAILABLE as error:
        database_outage.failed(error)  # one line per outage, not a traceback per send
        return error
    except Exception as error:
        logger.exception("a send of user %s could not be stored", send.user.pk)
        return error


def _client_ids_stored(sends: list[Send]) -> dict[tuple[int, str], Resent]:
    """The sends already stored among `sends`, by (user id, client_id), in one query."""
    client_ids = {send.client_id for send in sends if send.client_id}
    if not client_ids:
        return {}
    stored = Message.objects.filter(
        conversation__user__in={send.user.pk for send in sends}, client_id__in=client_ids
    ).values_list("conversation__user_id", "client_id", "conversation_id", "pk")
    return {(user_id, client_id): Resent(conversation_id, pk) for user_id, client_id, conversation_id, pk in stored}
