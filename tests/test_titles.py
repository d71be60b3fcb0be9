"""Titles: the first message's at once, then the model's after the first answer, unless
the person renamed it; any failure keeps the first one, quietly."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import titles
from chat.models import Conversation
from chat.titles import title_clean
from tests.test_consumer import conversation_id_of, frames_until, send

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
