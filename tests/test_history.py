"""History review: the list in pages, branches (edit, regenerate, step between versions),
and renaming, pinning, archiving and deleting, as every tab of the user hears them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from chat.running import running
from chat.history import ListCursor, conversation_list, conversation_row_to_dict
from chat.models import Conversation, Message
from tests.test_consumer import answer_of, conversation_id_of, first, frames_until, send

pytestmark = pytest.mark.django_db(transaction=True)


async def ask(ws, text, **extra):
    await send(ws, text, **extra)
    return await frames_until(ws, lambda f: f["type"] in ("done", "error"))


@database_sync_to_async
def stored(model, **filters):
    return list(model.objects.filter(**filters))


# --- branches ----------------------------------------------------------------------------


async def test_editing_an_earlier_question_makes_a_branch_the_page_can_step_back_to(user, connect):
    ws = await connect(user)
    first_turn = await ask(ws, "What is 2+2? [sim deltas=2 interval=0]")
    conversation_id = conversation_id_of(first_turn)
    question_1 = first(first_turn, "message")["message"]["id"]
    await ask(ws, "And 3+3? [sim deltas=2 interval=0]", conversation_id=conversation_id)

    # Edit the first question: a new version beside it, answered, with the later turn left
    # on the old branch. Every tab gets the new thread.
    frames = await ask(ws, "What is 2+3? [sim deltas=2 interval=0]", conversation_id=conversation_id,
                       type="edit", message_id=question_1, client_id="edit-1")
    thread = first(frames, "thread")["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant"]
    new_question = thread[0]
    assert new_question["content"].startswith("What is 2+3?") and new_question["sibling_ids"] == [
        question_1, new_question["id"]]
    assert first(frames, "done")["message"]["id"] == thread[1]["id"]

    # What the model was sent is the branch shown: the edited question, not the old turns.
    conversation = (await stored(Conversation, pk=conversation_id))[0]
    assert conversation.leaf_id == thread[1]["id"]

    # Step back to the first version: the old branch, down to its newest message.
    await ws.send_json_to({"type": "branch", "message_id": question_1})
    back = (await frames_until(ws, lambda f: f["type"] == "thread"))[-1]["messages"]
    assert [m["content"][:8] for m in back] == ["What is ", "t0 t1 ", "And 3+3?", "t0 t1 "]
    assert back[0]["sibling_ids"] == [question_1, new_question["id"]]

    # A reload shows the branch chosen; a send goes to its end.
    follow = await ask(ws, "Next [sim deltas=1 interval=0]", conversation_id=conversation_id)
    assert answer_of(follow)["parent_id"] == first(follow, "message")["message"]["id"]
    assert first(follow, "message")["message"]["parent_id"] == back[-1]["id"]


async def test_regenerating_an_earlier_answer_keeps_the_old_one_as_a_version(user, connect):
    ws = await connect(user)
    first_turn = await ask(ws, "One [sim deltas=2 interval=0]")
    conversation_id = conversation_id_of(first_turn)
    old_answer = answer_of(first_turn)["id"]
    await ask(ws, "Two [sim deltas=2 interval=0]", conversation_id=conversation_id)
    await ws.send_json_to({"type": "retry", "message_id": old_answer})
    frames = await frames_until(ws, lambda f: f["type"] == "done")
    thread = first(frames, "thread")["messages"]
    assert [m["role"] for m in thread] == ["user", "assistant"]
    assert thread[1]["sibling_ids"] == [old_answer, thread[1]["id"]]


async def test_a_version_of_someone_elses_message_cannot_be_shown_or_edited(user, other_user, connect):
    theirs = await connect(other_user)
    frames = await ask(theirs, "Private [sim deltas=1 interval=0]")
    their_question = first(frames, "message")["message"]["id"]
    mine = await connect(user)
    await mine.send_json_to({"type": "branch", "message_id": their_question})
    assert (await mine.receive_json_from())["code"] == "not_found"
    refused = await ask(mine, "Edited", type="edit", conversation_id=conversation_id_of(frames),
                        message_id=their_question)
    assert refused[-1]["code"] == "not_found"
    assert len(await stored(Message, conversation_id=conversation_id_of(frames))) == 2


async def test_a_tab_that_shows_an_old_branch_gets_the_thread_when_it_subscribes(user, connect):
    ws = await connect(user)
    frames = await ask(ws, "Hello [sim deltas=1 interval=0]")
    conversation_id = conversation_id_of(frames)
    question = first(frames, "message")["message"]["id"]
    shown = [question, answer_of(frames)["id"]]
    await ask(ws, "Hi [sim deltas=1 interval=0]", conversation_id=conversation_id, type="edit", message_id=question)
    away = await connect(user)  # a tab that was away while the branch changed
    await away.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "shown": shown,
                             "after_id": shown[-1]})
    got = await frames_until(away, lambda f: f["type"] == "thread")
    assert [m["content"][:2] for m in got[-1]["messages"]] == ["Hi", "t0"]


# --- renaming, pinning, archiving, deleting ----------------------------------------------


async def test_rename_pin_archive_and_delete_reach_every_tab_of_the_user(user, other_user, connect):
    ws, other_tab = await connect(user), await connect(user)
    frames = await ask(ws, "Plan a trip [sim deltas=1 interval=0]")
    conversation_id = conversation_id_of(frames)
    await frames_until(other_tab, lambda f: f["type"] == "conversation")

    await ws.send_json_to({"type": "change_conversations", "conversation_ids": [conversation_id],
                           "title": "  Trip   to Kyoto "})
    renamed = (await frames_until(other_tab, lambda f: f["type"] == "conversation_updated"))[-1]["conversation"]
    assert renamed["title"] == "Trip to Kyoto"
    await ws.send_json_to({"type": "change_conversations", "conversation_ids": [conversation_id], "pinned": True})
    assert (await frames_until(other_tab, lambda f: f["type"] == "conversation_updated"))[-1]["conversation"]["pinned"]
    stored_row = (await stored(Conversation, pk=conversation_id))[0]
    assert (stored_row.title_source, stored_row.pinned) == ("user", True)

    # Someone else's conversation: not found, and unchanged.
    stranger = await connect(other_user)
    await stranger.send_json_to({"type": "change_conversations", "conversation_ids": [conversation_id],
                                 "title": "mine now"})
    assert (await stranger.receive_json_from())["code"] == "not_found"
    await stranger.send_json_to({"type": "delete_conversations", "conversation_ids": [conversation_id]})
    assert (await stranger.receive_json_from())["code"] == "not_found"

    await ws.send_json_to({"type": "delete_conversations", "conversation_ids": [conversation_id]})
    deleted = (await frames_until(other_tab, lambda f: f["type"] == "conversation_deleted"))[-1]
    assert deleted["conversation_id"] == conversation_id
    assert await stored(Conversation) == [] and await stored(Message) == []


async def test_deleting_a_conversation_stops_its_running_answer_first(user, connect):
    ws = await connect(user)
    await send(ws, "Long one [sim deltas=500 interval=20]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    conversation_id, answer_id = conversation_id_of(frames), answer_of(frames)["id"]
    assert answer_id in running.generations
    await ws.send_json_to({"type": "delete_conversations", "conversation_ids": [conversation_id]})
    await frames_until(ws, lambda f: f["type"] == "conversation_deleted")
    assert await stored(Message) == []
    for _ in range(100):  # the generation ends within a moment, writing nothing back
        if answer_id not in running.generations:
            break
        await asyncio.sleep(0.05)
    assert answer_id not in running.generations
    assert await stored(Message) == [] and await stored(Conversation) == []


@pytest.mark.parametrize("frame, code", [
    ({"type": "change_conversations", "conversation_ids": [1], "title": "   "}, "bad_title"),
    ({"type": "change_conversations", "conversation_ids": [1], "title": "x" * 201}, "bad_title"),
    ({"type": "change_conversations", "conversation_ids": [1, 2], "title": "two at once"}, "bad_frame"),
    ({"type": "change_conversations", "conversation_ids": [1], "pinned": "yes"}, "bad_frame"),
    ({"type": "change_conversations", "conversation_ids": [1]}, "bad_frame"),
    ({"type": "change_conversations", "conversation_ids": "1", "pinned": True}, "bad_frame"),
    ({"type": "delete_conversations", "conversation_ids": []}, "bad_frame"),
    ({"type": "delete_conversations", "conversation_ids": [1.5]}, "bad_frame"),
    ({"type": "branch", "message_id": "x"}, "not_found"),
])
async def test_bad_changes_are_refused_and_change_nothing(user, connect, frame, code):
    ws = await connect(user)
    await ask(ws, "Keep me [sim deltas=1 interval=0]")
    await ws.send_json_to(frame)
    assert (await ws.receive_json_from())["code"] == code
    conversation = (await stored(Conversation))[0]
    assert conversation.title_source != "user" and conversation.title.startswith(("Keep me", "Simulated: Keep me"))
    assert not conversation.pinned


# --- the list ----------------------------------------------------------------------------


def test_the_list_comes_in_pages_pinned_first_then_newest_with_archived_ones_apart(user, other_user):
    now = timezone.now()
    made = []
    for i in range(7):
        conversation = Conversation.objects.create(user=user, model="yi-large", title=f"c{i}")
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=now - timedelta(hours=i))
        made.append(conversation.pk)
    Conversation.objects.filter(pk=made[5]).update(pinned=True)
    Conversation.objects.filter(pk=made[1]).update(archived=True)
    Conversation.objects.create(user=other_user, model="yi-large", title="theirs")

    pages, after = [], None
    while True:
        page, after = conversation_list(user=user, after=after, limit=2)
        pages.append([c.title for c in page])
        if after is None:
            break
    assert pages == [["c5", "c0"], ["c2", "c3"], ["c4", "c6"]]
    archived, _ = conversation_list(user=user, archived=True)
    assert [c.title for c in archived] == ["c1"]


def test_the_list_is_two_queries_however_many_conversations(user, django_assert_num_queries):
    for i in range(60):
        Conversation.objects.create(user=user, model="yi-large", title=f"c{i}")
    with django_assert_num_queries(2):  # the page, and which of its rows hold images
        page, after = conversation_list(user=user)
        [conversation_row_to_dict(c) for c in page]  # as GET /conversations/ sends them
    assert len(page) == 50 and after is not None


def test_the_list_over_http_marks_images_and_refuses_a_made_up_cursor(user, other_user):
    Conversation.objects.create(user=user, model="yi-large", title="mine")
    Conversation.objects.create(user=other_user, model="yi-large", title="theirs")
    client = Client()
    client.force_login(user)
    body = client.get("/api/conversations").json()
    assert [c["title"] for c in body["conversations"]] == ["mine"] and body["next"] is None
    assert body["conversations"][0]["has_images"] is False
    bad = client.get("/api/conversations?after=1_notadate_3")
    assert bad.status_code == 400 and bad.json()["code"] == "bad_cursor"
    assert ListCursor.decode("1_2026-01-01T00:00:00+00:00_3") is not None
    assert Client().get("/api/conversations").status_code == 302


def test_search_over_http_finds_ones_own_text_with_marked_snippets_and_refuses_bad_queries(user, other_user):
    mine = Conversation.objects.create(user=user, model="yi-large", title="Weather")
    Message.objects.create(conversation=mine, role="assistant", content="今天北京天气很好，适合散步。")
    theirs = Conversation.objects.create(user=other_user, model="yi-large", title="Theirs")
    Message.objects.create(conversation=theirs, role="assistant", content="北京天气 secret")
    client = Client()
    client.force_login(user)
    body = client.get("/api/search", {"q": " 北京天气 "}).json()
    assert body["query"] == "北京天气"
    (hit,) = body["results"]
    assert hit["conversation_id"] == mine.pk and ["北京天气", True] in hit["snippet"]
    assert "".join(text for text, _ in hit["snippet"]) == "今天北京天气很好，适合散步。"
    assert client.get("/api/search", {"q": "x" * 201}).json()["code"] == "query_too_long"
    assert client.get("/api/search", {"q": "a\x00b"}).json()["code"] == "bad_query"
    assert client.get("/api/search", {"q": ""}).json()["results"] == []
    assert Client().get("/api/search", {"q": "北京"}).status_code == 302
