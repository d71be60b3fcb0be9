"""Storing sends and endings in batches (chat.conversations), straight against the database."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.conversations import Resent, Send, exchanges_send
from chat.endings import messages_finish
from chat.refusals import SendRefused
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def new_send(user, text, **extra) -> Send:
    return Send(user=user, conversation_id=None, text=text, model="yi-large", **extra)


def test_a_burst_of_new_conversations_is_stored_in_a_fixed_number_of_queries(user, other_user):
    with CaptureQueriesContext(connection) as alone:
        exchanges_send([new_send(user, "warm-up", client_id="c-1")])
    sends = [new_send(user if i % 2 else other_user, f"question {i}", client_id=f"c{i}") for i in range(30)]
    with CaptureQueriesContext(connection) as burst:
        outcomes = exchanges_send(sends)
    # The transaction's two and the new conversations' savepoint's two, the stored-client_id
    # check, the two reads of the limits (answers running, sends in the last minute), the
    # senders' API keys, three INSERTs, the attachments read.
    assert len(burst) == len(alone) == 12

    for send, exchange in zip(sends, outcomes):
        conversation = Conversation.objects.get(pk=exchange.conversation_id)
        question, answer = Message.objects.filter(conversation=conversation)
        assert (conversation.user, conversation.title) == (send.user, send.text)
        assert (question.role, question.content, question.client_id, question.parent) == (
            "user", send.text, send.client_id, None)
        assert (answer.role, answer.status, answer.parent, answer.pk) == ("assistant", "streaming", question, exchange.answer.pk)
        assert answer.heartbeat_at is not None
        assert exchange.plan.body == {"model": "yi-large", "messages": [{"role": "user", "content": send.text}]}
        (user_group, conversation_frame), (_, question_frame), (_, answer_frame) = exchange.events
        assert user_group == f"user.{send.user.pk}"
        assert conversation_frame["client_id"] == send.client_id
        assert conversation_frame["conversation"]["id"] == conversation.pk
        assert question_frame["message"]["id"] == question.pk and question_frame["message"]["attachments"] == []
        assert answer_frame["message"]["id"] == answer.pk


def test_each_send_of_a_mixed_batch_gets_its_own_outcome_in_order(user, other_user):
    first = exchanges_send([new_send(user, "[sim deltas=1] first", client_id="stored")])[0]
    streaming = first.conversation_id
    ended = exchanges_send([new_send(user, "second")])[0]
    Message.objects.filter(pk=ended.answer.pk).update(status="complete", content="an answer")
    foreign = Conversation.objects.create(user=other_user, model="yi-large")

    outcomes = exchanges_send([
        new_send(user, "a resend", client_id="stored"),
        Send(user=user, conversation_id=streaming, text="too soon", model="yi-large"),
        Send(user=user, conversation_id=ended.conversation_id, text="follow-up", model="yi-vision", client_id="f"),
        Send(user=user, conversation_id=foreign.pk, text="not mine", model="yi-large"),
        new_send(user, "twice at once", client_id="dup"),
        new_send(user, "twice at once", client_id="dup"),
    ])

    resend, busy, follow_up, missing, once, twice = outcomes
    # A stored client_id names the send it stored (the tab is told how that one stands).
    assert resend == Resent(conversation_id=streaming, question_id=first.answer.parent_id)
    assert twice is None
    assert isinstance(busy, SendRefused) and busy.code == "busy" and busy.message_id == first.answer.pk
    assert isinstance(missing, SendRefused) and missing.code == "not_found"
    assert follow_up.conversation_id == ended.conversation_id
    assert follow_up.plan.body["model"] == "yi-vision"
    assert [m["content"] for m in follow_up.plan.body["messages"]] == ["second", "an answer", "follow-up"]
    assert Conversation.objects.get(pk=ended.conversation_id).model == "yi-vision"
    assert once.conversation_id not in {streaming, ended.conversation_id}
    # The refused sends stored nothing; the resends stored nothing twice.
    assert Message.objects.filter(content__in=["too soon", "not mine", "a resend"]).count() == 0
    assert Message.objects.filter(content="twice at once").count() == 1


def test_answers_ending_together_get_their_done_frames_and_a_late_ending_gets_none(user):
    exchanges = exchanges_send([new_send(user, f"q{i}") for i in range(3)])
    ids = [e.answer.pk for e in exchanges]
    endings = [
        (ids[0], {"status": "complete", "content": "one", "seq": 1, "finish_reason": "stop"}),
        (ids[1], {"status": "stopped", "content": "tw", "seq": 2}),
        (ids[0], {"status": "interrupted", "error_code": "interrupted"}),  # a sweep racing the first
        (ids[2], {"status": "error", "error_code": "overloaded", "error_message": "busy", "content": ""}),
    ]
    with CaptureQueriesContext(connection) as queries:
        frames = messages_finish(endings)
    # The transaction's two, the answers' models and keys (for the cost and the key's last use), a
    # savepoint's two and an UPDATE each, one read, conversations' updated_at (no key paid: no UPDATE of keys).
    assert len(queries) == 5 + 3 * len(endings)

    assert [len(f) for f in frames] == [1, 1, 0, 1]
    (group, done), = frames[0]
    assert group == f"conversation.{exchanges[0].conversation_id}"
    assert (done["type"], done["message_id"], done["seq"]) == ("done", ids[0], 1)
    assert (done["message"]["status"], done["message"]["content"]) == ("complete", "one")
    assert frames[3][0][1]["message"]["error_code"] == "overloaded"
    stored = Message.objects.in_bulk(ids)
    assert [stored[i].status for i in ids] == ["complete", "stopped", "error"]
    assert all(stored[i].heartbeat_at is None for i in ids)


def test_a_send_that_cannot_be_stored_fails_alone_not_its_whole_batch(user, other_user):
    """Half a surrogate pair (which JSON can carry) cannot be encoded for the database.
    The page's sends are checked for it first; here the store meets it anyway."""
    ended = exchanges_send([new_send(user, "first")])[0]
    Message.objects.filter(pk=ended.answer.pk).update(status="complete")
    outcomes = exchanges_send([
        new_send(user, "fine"),
        new_send(other_user, "broken \ud800"),
        Send(user=user, conversation_id=ended.conversation_id, text="broken \ud800 too", model="yi-large"),
        Send(user=user, conversation_id=ended.conversation_id, text="fine too", model="yi-large"),
    ])
    fine, broken, broken_too, fine_too = outcomes
    assert isinstance(broken, UnicodeEncodeError) and isinstance(broken_too, UnicodeEncodeError)
    assert fine.plan.body["messages"] == [{"role": "user", "content": "fine"}]
    assert fine_too.plan.body["messages"][-1] == {"role": "user", "content": "fine too"}
    assert set(Message.objects.filter(role="user").values_list("content", flat=True)) == {"first", "fine", "fine too"}
    assert Conversation.objects.count() == 2


def test_an_ending_that_cannot_be_stored_fails_alone(user):
    exchanges = exchanges_send([new_send(user, f"q{i}") for i in range(2)])
    frames = messages_finish([
        (exchanges[0].answer.pk, {"status": "complete", "content": "half \udc00", "seq": 1}),
        (exchanges[1].answer.pk, {"status": "complete", "content": "whole", "seq": 1}),
    ])
    assert isinstance(frames[0], UnicodeEncodeError)
    assert frames[1][0][1]["message"]["content"] == "whole"
    assert Message.objects.get(pk=exchanges[0].answer.pk).status == "streaming"  # left for the sweep


def test_a_refused_send_repeated_in_its_batch_is_refused_again_not_ignored(user):
    """A page that reconnected resends what it had not heard back about: if the first copy
    is refused, the copy the live tab waits for must hear so too."""
    streaming = exchanges_send([new_send(user, "[sim deltas=1] first")])[0].conversation_id
    again = Send(user=user, conversation_id=streaming, text="too soon", model="yi-large", client_id="same")
    first, second = exchanges_send([again, again])
    assert (first.code, second.code) == ("busy", "busy")
