"""Titles: the first message's at once, then the model's after the first answer, unless
the person renamed it; any failure keeps the first one, quietly."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import titles
from chat.models import Conversation
from chat.titles import title_clean
from tests.test_consumer import answer_of, conversation_id_of, frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def conversation(pk):
    return Conversation.objects.get(pk=pk)


async def settled():
    while titles._pending:
        await asyncio.sleep(0.02)


async def test_the_first_answer_brings_a_better_title_to_every_tab(user, connect):
    ws, other_tab = await connect(user), await connect(user)
    await send(ws, "How do I bake sourdough bread at home? [sim deltas=3 interval=0]")
    frames = await frames_until(ws, lambda f: f["type"] == "done")
    conversation_id = conversation_id_of(frames)
    assert (await conversation(conversation_id)).title.startswith("How do I bake sourdough")
    renamed = await frames_until(other_tab, lambda f: f["type"] == "conversation_updated" and f["conversation"]["title"]
                                 .startswith("Simulated"))
    assert renamed[-1]["conversation"]["title"] == "Simulated: How do I bake sourdough"
    stored = await conversation(conversation_id)
    assert (stored.title, stored.title_source) == ("Simulated: How do I bake sourdough", "model")

    # The second answer asks for no title.
    await send(ws, "And rye? [sim deltas=1 interval=0]", conversation_id=conversation_id)
    await frames_until(ws, lambda f: f["type"] == "done")
    await settled()
    assert (await conversation(conversation_id)).title == "Simulated: How do I bake sourdough"


async def test_a_title_request_that_fails_keeps_the_first_title_quietly(user, connect, settings, caplog):
    settings.TITLE_MODEL = "no-such-model"  # the simulator answers 404
    ws = await connect(user)
    await send(ws, "Plan a week in Kyoto [sim deltas=2 interval=0]")
    frames = await frames_until(ws, lambda f: f["type"] == "done")
    await settled()
    stored = await conversation(conversation_id_of(frames))
    assert (stored.title, stored.title_source) == ("Plan a week in Kyoto [sim deltas=2 interval=0]", "message")
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_renamed_conversation_keeps_its_name(user, connect):
    ws = await connect(user)
    await send(ws, "Slow one [sim deltas=2 interval=0]")
    frames = await frames_until(ws, lambda f: f["type"] == "message")
    conversation_id = conversation_id_of(frames)
    await ws.send_json_to({"type": "change_conversations", "conversation_ids": [conversation_id], "title": "Mine"})
    await frames_until(ws, lambda f: f["type"] == "done")
    await settled()
    assert (await conversation(conversation_id)).title == "Mine"


@pytest.mark.parametrize("reply, title", [
    ('"Baking Sourdough at Home."', "Baking Sourdough at Home"),
    ("Title: **Kyoto week**\nMore text", "Kyoto week"),
    ("「北京天气」。", "北京天气"),
    ("\n\n  ", ""),
    ("x" * 80, "x" * 59 + "…"),
])
def test_a_models_title_is_cleaned_to_one_line(reply, title):
    assert title_clean(reply) == title


async def titled(ws, conversation_id, title, timeout=10.0):
    """The `conversation_updated` frame that brings `title`."""
    frames = await frames_until(ws, lambda f: f["type"] == "conversation_updated"
                                and f["conversation"]["id"] == conversation_id
                                and f["conversation"]["title"] == title, timeout=timeout)
    return frames[-1]["conversation"]


async def test_a_first_answer_stopped_midway_still_brings_a_title(user, connect):
    """Before: only an answer that finished asked for one, so Stop kept the raw question."""
    ws, other_tab = await connect(user), await connect(user)
    await send(ws, "How do I bake sourdough bread at home? [sim deltas=500 interval=5]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    await ws.send_json_to({"type": "stop", "message_id": answer_of(frames)["id"]})
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert done["status"] == "stopped" and done["content"]
    conversation_id = conversation_id_of(frames)
    await titled(other_tab, conversation_id, "Simulated: How do I bake sourdough")
    stored = await conversation(conversation_id)
    assert (stored.title, stored.title_source) == ("Simulated: How do I bake sourdough", "model")


async def test_a_first_answer_stopped_before_its_first_word_is_titled_from_the_question(user, connect):
    ws = await connect(user)
    await send(ws, "Plan a week in Kyoto for two [sim stall=0 stall_for=1]")
    frames = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
    await ws.send_json_to({"type": "stop", "message_id": answer_of(frames)["id"]})
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert (done["status"], done["content"]) == ("stopped", "")
    await titled(ws, conversation_id_of(frames), "Simulated: Plan a week in Kyoto")


async def test_a_failed_first_answer_keeps_its_first_title_until_a_retry_answers(user, connect):
    """No title is asked after an error: it would go to the key and model that just failed.
    Here the title would have worked (the answer asked for more tokens than the model's window
    holds, the title asks for 24), so the first title shows that none was asked."""
    ws = await connect(user)
    await send(ws, "Plan a week in Kyoto for two", model="yi-large-turbo", max_tokens=4096)
    frames = await frames_until(ws, is_done)
    done = frames[-1]
    assert (done["message"]["status"], done["message"]["error_code"]) == ("error", "context_length")
    conversation_id = conversation_id_of(frames)
    await settled()
    stored = await conversation(conversation_id)
    assert (stored.title, stored.title_source) == ("Plan a week in Kyoto for two", "message")

    await ws.send_json_to({"type": "retry", "message_id": done["message_id"], "max_tokens": 100})
    assert (await frames_until(ws, is_done))[-1]["message"]["status"] == "complete"
    await titled(ws, conversation_id, "Simulated: Plan a week in Kyoto")


async def test_a_titled_first_answer_regenerated_asks_for_no_second_title(user, connect, settings, caplog):
    """Each title request counts against the key's tier (4 a minute on the Free tier)."""
    ws = await connect(user)
    await send(ws, "How do I bake sourdough bread at home? [sim deltas=500 interval=2]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    await ws.send_json_to({"type": "stop", "message_id": answer_of(frames)["id"]})
    done = (await frames_until(ws, is_done))[-1]
    await titled(ws, conversation_id_of(frames), "Simulated: How do I bake sourdough")

    caplog.set_level("INFO", logger="chat.titles")
    settings.TITLE_MODEL = "no-such-model"  # a second request would fail, and say so in the log
    await ws.send_json_to({"type": "retry", "message_id": done["message_id"]})
    assert (await frames_until(ws, is_done, timeout=30))[-1]["message"]["status"] == "complete"
    await settled()
    assert [r.getMessage() for r in caplog.records if r.name == "chat.titles"] == []
