"""`subscribe` answers from the database: a tab that missed frames learns how things stand."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.test_consumer import answer_of, conversation_id_of, frames_until, is_done, nothing_but_titles, send, stored

pytestmark = pytest.mark.django_db(transaction=True)


async def stored_when_ended(message_id: int, timeout: float = 10.0) -> Message:
    async with asyncio.timeout(timeout):
        while (message := await stored(message_id)).status == Message.Status.STREAMING:
            await asyncio.sleep(0.05)
    return message


async def test_a_tab_whose_socket_closed_across_an_answers_end_is_told_the_end_on_subscribe(user, connect):
    """The issue's repro with no fault at all: close at seq 10, come back after the end."""
    ws = await connect(user)
    await send(ws, "[sim deltas=100 interval=2]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 10)
    conversation_id, answer_id, last_seq = conversation_id_of(frames), frames[-1]["message_id"], frames[-1]["seq"]
    await ws.disconnect()
    answer = await stored_when_ended(answer_id)

    again = await connect(user)
    await again.send_json_to({"type": "subscribe", "conversation_id": conversation_id,
                              "holding": [{"message_id": answer_id, "last_seq": last_seq}], "after_id": answer_id})
    frames = await frames_until(again, is_done)
    assert [f["type"] for f in frames] == ["subscribed", "done"]
    done = frames[-1]
    assert (done["message_id"], done["seq"]) == (answer_id, answer.seq)
    assert done["message"]["status"] == "complete"
    assert done["message"]["content"] == answer.content == "".join(f"t{i} " for i in range(100))


async def test_the_old_single_message_id_still_names_a_held_answer(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=3 interval=0]")
    frames = await frames_until(ws, is_done)
    answer_id = frames[-1]["message_id"]
    await ws.send_json_to({"type": "subscribe", "conversation_id": conversation_id_of(frames),
                           "message_id": answer_id, "last_seq": 1})
    frames = await frames_until(ws, is_done)
    assert frames[-1]["message"]["content"] == "t0 t1 t2 "


async def test_messages_added_while_a_tab_was_away_arrive_in_order_on_subscribe(user, connect):
    away = await connect(user)
    await send(away, "[sim deltas=2 interval=0] first")
    frames = await frames_until(away, is_done)
    conversation_id, first_answer = conversation_id_of(frames), frames[-1]["message_id"]
    await away.disconnect()

    other = await connect(user)
    await send(other, "[sim deltas=2 interval=0] second", conversation_id=conversation_id)
    await frames_until(other, is_done)

    back = await connect(user)
    await back.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "holding": [],
                             "after_id": first_answer})
    frames = [await back.receive_json_from(timeout=5) for _ in range(3)]
    assert [f["type"] for f in frames] == ["subscribed", "message", "message"]
    question, answer = frames[1]["message"], frames[2]["message"]
    assert question["id"] < answer["id"] and question["content"] == "[sim deltas=2 interval=0] second"
    assert (answer["status"], answer["content"]) == ("complete", "t0 t1 ")
    assert await nothing_but_titles(back, 0.3)


async def test_a_streaming_answer_added_while_away_comes_with_its_text_so_far(user, connect):
    ws = await connect(user)
    await send(ws, "[sim deltas=1 interval=0]")
    frames = await frames_until(ws, is_done)
    conversation_id, known = conversation_id_of(frames), frames[-1]["message_id"]
    await send(ws, "[sim deltas=400 interval=5]", conversation_id=conversation_id)
    answer_id = answer_of(await frames_until(ws, lambda f: f["type"] == "delta"))["id"]

    back = await connect(user)
    await back.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "after_id": known})
    frames = await frames_until(back, lambda f: f["type"] == "snapshot")
    assert [f["type"] for f in frames] == ["subscribed", "message", "message", "snapshot"]
    assert frames[2]["message"]["id"] == answer_id and frames[2]["message"]["status"] == "streaming"
    snapshot = frames[-1]
    assert snapshot["from_seq"] == 0 and snapshot["text"].startswith("t0 t1 ")
    await ws.send_json_to({"type": "stop", "message_id": answer_id})
    await frames_until(back, is_done)


async def test_an_answer_of_another_user_named_in_holding_tells_nothing(user, other_user, connect):
    theirs = await connect(other_user)
    await send(theirs, "[sim deltas=2 interval=0] secret")
    their_answer = (await frames_until(theirs, is_done))[-1]["message_id"]
    mine = await connect(user)
    await send(mine, "[sim deltas=1 interval=0]")
    conversation_id = conversation_id_of(await frames_until(mine, is_done))

    await mine.send_json_to({"type": "subscribe", "conversation_id": conversation_id,
                             "holding": [{"message_id": their_answer, "last_seq": 0}]})
    assert (await mine.receive_json_from(timeout=5))["type"] == "subscribed"
    assert await nothing_but_titles(mine, 0.3)


@pytest.mark.parametrize("holding", [
    ["x", 5, None, {"message_id": "1e400"}, {"message_id": 10**30, "last_seq": -3}, {"last_seq": 2}],
    {"message_id": 1},
    "everything",
])
async def test_holding_entries_that_name_no_message_are_ignored(user, connect, holding):
    ws = await connect(user)
    await send(ws, "[sim deltas=1 interval=0]")
    conversation_id = conversation_id_of(await frames_until(ws, is_done))
    await ws.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "holding": holding,
                           "after_id": "not a number"})
    assert await ws.receive_json_from(timeout=5) == {"type": "subscribed", "conversation_id": conversation_id}
    assert await nothing_but_titles(ws, 0.3)
    assert await database_sync_to_async(Message.objects.count)() == 2
