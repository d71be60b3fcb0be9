"""Another person's conversation and answers cannot be touched over the websocket."""

from __future__ import annotations

import pytest

from tests.test_consumer import answer_of, conversation_id_of, frames_until, is_done, nothing_but_titles, send

pytestmark = pytest.mark.django_db(transaction=True)


async def test_another_persons_answer_cannot_be_stopped_retried_continued_or_watched(user, other_user, connect):
    owner, intruder = await connect(user), await connect(other_user)
    await send(owner, "[sim deltas=1 interval=0] first")
    first = await frames_until(owner, is_done)
    conversation_id, ended = conversation_id_of(first), answer_of(first)["id"]
    await send(owner, "[sim deltas=300 interval=5]", conversation_id=conversation_id)
    running = answer_of(await frames_until(owner, lambda f: f["type"] == "delta"))["id"]

    await intruder.send_json_to({"type": "stop", "message_id": running})
    for kind in ("retry", "continue"):
        await intruder.send_json_to({"type": kind, "message_id": ended})
        assert (await intruder.receive_json_from(timeout=5))["code"] == "not_found"
    await intruder.send_json_to({"type": "subscribe", "conversation_id": conversation_id,
                                 "holding": [{"message_id": running, "last_seq": 0}], "after_id": 0})
    assert (await intruder.receive_json_from(timeout=5))["code"] == "not_found"
    await send(intruder, "into someone else's conversation", conversation_id=conversation_id)
    assert (await intruder.receive_json_from(timeout=5))["code"] == "not_found"

    done = (await frames_until(owner, is_done, timeout=30))[-1]
    assert done["message"]["status"] == "complete"  # the intruder's Stop did nothing
    assert done["message"]["content"] == "".join(f"t{i} " for i in range(300))
    assert await nothing_but_titles(intruder, 0.3)
