"""Ending answers: storing how each ended and the `done` frame every tab gets, and the
frame for an ending the database keeps refusing. Writes, called by the generation
(chat/relay.py) through chat.batches, and by the sweep for answers of dead processes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from chat.batches import DatabaseBatch
from chat.catalog import tokens_cost
from chat.events import Event, conversation_group
from chat.history import message_to_dict
from chat.keys import key_used
from chat.models import Conversation, Message
from chat.outages import DATABASE_UNAVAILABLE
from chat.pacing import prompt_tokens
from chat.requests import tokens_estimate
from chat.sentences import error_fields, sentence

logger = logging.getLogger(__name__)


def answer_unsaved_event(message_id: int, conversation_id: int, fields: dict[str, Any]) -> Event:
    """The `done` frame for an answer whose ending the database keeps refusing: the text the
    tabs were shown, as an error that says so. The row keeps its last checkpoint until the
    generation's later tries store the ending (see `Generation._finish`)."""
    try:
        message = Message.objects.filter(pk=message_id).first()
    except DatabaseError:  # a database that refuses writes may refuse this read too
        message = None
    data = (
        message_to_dict(message)
        if message is not None
        else {"id": message_id, "conversation_id": conversation_id, "role": Message.Role.ASSISTANT}
    )
    data.update(
        content=fields.get("content", data.get("content", "")),
        seq=fields.get("seq", data.get("seq", 0)),
        status=Message.Status.ERROR,
        error_code="not_saved",
        **error_fields(sentence("not_saved")),
    )
    return done_event(data)


def usage_estimate(fields: dict[str, Any], *, request: dict[str, Any] | None, text: str) -> dict[str, Any]:
    """The token figures an answer's ending stores beyond the upstream's own, given the
    ending's `fields` as its stream left them, the `request` the provider took (None: it
    never took one: the answer was stopped while it waited its turn, or the provider's last
    word was a refusal or a retry) and the `text` that arrived from it.

    The upstream's usage comes in a stream's last chunk, so an answer stopped, interrupted,
    cut, stalled or failed after its first text has none, though the provider billed what it
    read and wrote: without an estimate the Usage page under-reported what a person spent.
    It is the prompt by the estimate pacing counts it by (chat/pacing.py) and the output by
    the same per-character estimate of what arrived (text and tool calls), marked
    `usage_estimated`. An answer stopped before its first word counts its prompt alone: the
    provider had the request and read it (OpenAI-style APIs bill a request cut off by the
    client for its prompt). One that failed before any output counts nothing: the provider
    refused it or never answered. A complete answer without usage (a provider that never
    sends it) is left without figures, as before: there is nothing cut short to account for."""
    if any(fields.get(name) is not None for name in ("prompt_tokens", "completion_tokens", "total_tokens")):
        return {"usage_estimated": None}  # the upstream's own (a continued answer's earlier estimate is gone)
    if fields.get("status") == Message.Status.COMPLETE or request is None:
        return {}
    calls = fields.get("tool_calls") or []
    output = tokens_estimate(text) + sum(
        tokens_estimate(call["function"]["name"] + call["function"]["arguments"]) for call in calls
    )
    if not output and fields.get("status") not in (Message.Status.STOPPED, Message.Status.INTERRUPTED):
        return {}
    prompt = prompt_tokens(request)
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "usage_estimated": True}


def messages_finish(
    endings: list[tuple[int, dict[str, Any]]], *, heartbeats: dict[int, datetime] | None = None
) -> list[list[Event] | Exception]:
    """End streaming answers, each (message id, fields); per ending, the `done` frame to broadcast.

    Answers that end together are ended in one transaction (chat.batches), each in a
    savepoint: an ending that cannot be stored gets its error, the others their frames.
    Nothing for an answer that had already ended (a stop racing a sweep, say): only the
    first ending counts. With `heartbeats` (message id -> heartbeat), only an answer whose
    heartbeat is still that one is ended: the sweep's check that its owner is gone.
    """
    now = timezone.now()
    frames: list[list[Event] | Exception] = [[] for _ in endings]
    with transaction.atomic():
        # Which model answered (for the cost) and which key paid, for the whole batch at once.
        answers = {pk: (model, key_id) for pk, model, key_id in Message.objects.filter(
            pk__in=[message_id for message_id, _ in endings]).values_list("pk", "model", "api_key_id")}
        ended = []
        for i, (message_id, fields) in enumerate(endings):
            model, _ = answers.get(message_id, ("", None))
            if "prompt_tokens" in fields or "completion_tokens" in fields:
                # Stored, so that usage and history show what it cost at today's prices.
                fields = {**fields, "cost_usd": tokens_cost(model, fields.get("prompt_tokens"),
                                                            fields.get("completion_tokens"))}
            try:
                with transaction.atomic():  # one ending the database refuses must not fail the others
                    unmoved = {"heartbeat_at": heartbeats[message_id]} if heartbeats else {}
                    if Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, **unmoved).update(
                        **fields, heartbeat_at=None, updated_at=now
                    ):
                        ended.append(i)
            except DATABASE_UNAVAILABLE as error:
                frames[i] = error  # its caller counts it and tries again (chat/relay.py Generation._finish)
            except Exception as error:
                logger.exception("answer %s could not be ended", message_id)
                frames[i] = error
        messages = Message.objects.in_bulk([endings[i][0] for i in ended])
        Conversation.objects.filter(pk__in={m.conversation_id for m in messages.values()}).update(updated_at=now)
        key_used({answers[endings[i][0]][1] for i in ended} - {None}, when=now)
    for i in ended:
        frames[i] = [done_event(message_to_dict(messages[endings[i][0]]))]
    return frames


# Endings that arrive together are stored together (chat.batches): a generation's answers
# and its tool calls' results (chat/relay.py, chat/tool_calls.py) share this one batch.
messages_finish_batched = DatabaseBatch(messages_finish)


def done_event(message: dict[str, Any]) -> Event:
    """The `done` frame of an ended answer (a `message_to_dict`), for its conversation's tabs."""
    frame = {"type": "done", "message_id": message["id"], "seq": message["seq"], "message": message}
    return conversation_group(message["conversation_id"]), frame
