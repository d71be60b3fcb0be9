"""Per-person limits on answers being written at once and on sends per minute."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.conversations import Send, exchanges_send
from chat.refusals import SendRefused
from chat.models import Message
from tests.test_consumer import answer_of, frames_until, is_done, send


def new_send(user, text: str) -> Send:
    return Send(user=user, conversation_id=None, text=text, model="yi-large")


@pytest.mark.django_db
def test_answers_at_once_over_the_limit_are_refused_and_store_nothing(user, other_user, settings):
    settings.USER_ANSWERS_AT_ONCE = 3
    outcomes = exchanges_send([new_send(user, f"q{i}") for i in range(5)] + [new_send(other_user, "mine")])
    refused = [o for o in outcomes if isinstance(o, SendRefused)]
    assert len(refused) == 2 and {o.code for o in refused} == {"too_many_answers"}
    assert refused[0].message == "You already have 3 answers being written (the limit). Wait for one to finish, or stop one."
    # Another person's send in the same batch is not counted against the first.
    assert not isinstance(outcomes[-1], SendRefused)
    assert Message.objects.filter(conversation__user=user, role="user").count() == 3
    # Once one has ended there is room again.
    Message.objects.filter(pk=outcomes[0].answer.pk).update(status="complete")
    assert not isinstance(exchanges_send([new_send(user, "again")])[0], SendRefused)


@pytest.mark.django_db
def test_sends_per_minute_over_the_limit_are_refused(user, settings):
    settings.USER_SENDS_PER_MINUTE = 4
    for i in range(4):
        outcome = exchanges_send([new_send(user, f"q{i}")])[0]
        Message.objects.filter(pk=outcome.answer.pk).update(status="complete")
    refused = exchanges_send([new_send(user, "one too many")])[0]
    assert isinstance(refused, SendRefused) and refused.code == "too_many_sends"
    assert "4 messages in the last minute" in refused.message
    assert not Message.objects.filter(content="one too many").exists()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_sending_a_thousand_new_conversations_starts_only_the_limit(user, connect, settings):
    """The audit's attack: one socket, 1,000 sends in a burst, 521 upstream streams at once."""
    settings.USER_ANSWERS_AT_ONCE = 4
    ws = await connect(user)
    for i in range(1000):
        await send(ws, f"[sim deltas=500 interval=20] {i}", client_id=f"flood-{i}")  # 10 s each
    frames = await frames_until(ws, lambda f: f["type"] == "error" and f["client_id"] == "flood-999", timeout=60)
    errors = [f for f in frames if f["type"] == "error"]
    assert len(errors) == 996 and {f["code"] for f in errors} == {"too_many_answers"}
    streaming = await database_sync_to_async(Message.objects.filter(status="streaming").count)()
    assert streaming == 4
    for message_id in {f["message"]["id"] for f in frames if f["type"] == "message" and f["message"]["role"] == "assistant"}:
        await ws.send_json_to({"type": "stop", "message_id": message_id})


@pytest.mark.django_db(transaction=True)
async def test_retry_is_refused_while_the_person_is_at_the_limit(user, connect, settings):
    ws = await connect(user)
    await send(ws, "[sim deltas=1 interval=0]")
    ended = answer_of(await frames_until(ws, is_done))
    settings.USER_ANSWERS_AT_ONCE = 1
    await send(ws, "[sim deltas=500 interval=20] long")
    running = answer_of(await frames_until(ws, lambda f: f["type"] == "delta"))
    await ws.send_json_to({"type": "retry", "message_id": ended["id"]})
    error = await frames_until(ws, lambda f: f["type"] == "error")
    assert error[-1]["code"] == "too_many_answers"
    await ws.send_json_to({"type": "stop", "message_id": running["id"]})
    await frames_until(ws, is_done)
