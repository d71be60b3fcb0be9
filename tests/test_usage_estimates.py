"""An answer that ends before the upstream's usage chunk (stopped, cut off) stores an
estimate of its tokens, marked so (chat/endings.py `usage_estimate`): the done frame, the
page's data, the Usage page and exports count it; a finished answer keeps the upstream's
own figures, unmarked. Over the real websocket, with the simulator upstream."""

from __future__ import annotations

import asyncio
import json
import math
import re
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat.models import Message
from chat.shutdown import generations_interrupt
from tests.test_consumer import answer_of, answer_stopped_midway, frames_until, is_done, send, stored

pytestmark = pytest.mark.django_db(transaction=True)


def prompt_estimate(question: str) -> int:
    """The request of a first question with no system prompt: one message, its 4 tokens of
    overhead and a quarter of a token per ASCII character (chat/pacing.py `prompt_tokens`)."""
    return 4 + math.ceil(len(question) / 4)


def yi_large_cost(tokens: int) -> str:
    return f"{Decimal(3) * tokens / 1_000_000:.6f}"  # $3 per million in and out


def page_messages(user, conversation_id: int) -> list[dict]:
    """The messages the chat page is served with (its `messages-data`), as the page reads them."""
    client = Client()
    client.force_login(user)
    page = client.get(f"/c/{conversation_id}/").content.decode()
    return json.loads(re.search(r'<script id="messages-data" type="application/json">(.*?)</script>', page).group(1))


def usage_page(user) -> str:
    client = Client()
    client.force_login(user)
    return " ".join(client.get("/usage/").content.decode().split())


async def test_a_stopped_answer_stores_estimated_tokens_and_a_finished_one_the_upstreams(user, connect):
    ws = await connect(user)
    question = "[sim deltas=500 interval=5]"
    await send(ws, question)
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    stopped_id = answer_of(frames)["id"]
    await ws.send_json_to({"type": "stop", "message_id": stopped_id})
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert done["status"] == "stopped" and done["content"].startswith("t0 t1 t2 ")
    prompt, completion = prompt_estimate(question), math.ceil(len(done["content"]) / 4)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "estimated": True}
    assert done["usage"] == usage
    assert done["cost_usd"] == yi_large_cost(prompt + completion)
    assert (await stored(stopped_id)).usage_estimated is True

    # The next answer finishes: the simulator's own figures (its prompt is a quarter of a
    # token per character of every message; one token per delta), not marked.
    await send(ws, "[sim deltas=5]", conversation_id=done["conversation_id"])
    finished = (await frames_until(ws, lambda f: is_done(f) and f["message_id"] != stopped_id))[-1]["message"]
    assert finished["status"] == "complete"
    real_prompt = math.ceil((len(question) + len(done["content"]) + len("[sim deltas=5]")) / 4)
    assert finished["usage"] == {"prompt_tokens": real_prompt, "completion_tokens": 5, "total_tokens": real_prompt + 5}
    assert (await stored(finished["id"])).usage_estimated is None

    # The page is served the same figures, the estimate marked.
    answers = {m["id"]: m for m in await database_sync_to_async(page_messages)(user, done["conversation_id"])}
    assert answers[stopped_id]["usage"] == usage
    assert answers[finished["id"]]["usage"] == finished["usage"]

    # The Usage page counts both, and says how much of it is estimated.
    page = await database_sync_to_async(usage_page)(user)
    total = prompt + completion + real_prompt + 5
    assert (f"{total} tokens ({prompt + real_prompt} in, {completion + 5} out) in 2 answers;" in page)
    assert (f"{prompt + completion} of these tokens are estimates: answers stopped or cut off before "
            "the provider said what they used." in page)


async def test_an_answer_stopped_before_its_first_word_counts_its_prompt(user, connect):
    """The request had gone: the provider read the prompt, though nothing came back."""
    ws = await connect(user)
    question = "[sim stall=0]"  # the stream opens and stays silent
    await send(ws, question)
    answer_id = answer_of(await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant"))["id"]
    await asyncio.sleep(0.3)
    await ws.send_json_to({"type": "stop", "message_id": answer_id})
    done = (await frames_until(ws, is_done))[-1]["message"]
    prompt = prompt_estimate(question)
    assert (done["status"], done["content"]) == ("stopped", "")
    assert done["usage"] == {"prompt_tokens": prompt, "completion_tokens": 0, "total_tokens": prompt, "estimated": True}
    assert done["cost_usd"] == yi_large_cost(prompt)


async def test_a_stream_cut_after_its_text_is_estimated_and_a_refused_request_counts_nothing(user, connect):
    ws = await connect(user)
    question = "[sim deltas=50 cut=3]"
    await send(ws, question)
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert (done["status"], done["error_code"], done["content"]) == ("error", "stream_cut", "t0 t1 t2 ")
    prompt = prompt_estimate(question)
    assert done["usage"] == {"prompt_tokens": prompt, "completion_tokens": 3, "total_tokens": prompt + 3,
                             "estimated": True}

    await send(ws, "[sim status=400]", conversation_id=done["conversation_id"])
    refused = (await frames_until(ws, lambda f: is_done(f) and f["message_id"] != done["id"]))[-1]["message"]
    assert (refused["status"], refused["error_code"]) == ("error", "bad_request")
    assert (refused["usage"], refused["cost_usd"]) == (None, None)
    assert await database_sync_to_async(Message.objects.filter(usage_estimated=True).count)() == 1


async def test_a_stopped_answer_continued_to_its_end_carries_the_upstreams_figures_unmarked(user, connect):
    ws = await connect(user)
    frames = await answer_stopped_midway(ws)
    answer_id = answer_of(frames)["id"]
    assert frames[-1]["message"]["usage"]["estimated"] is True

    await ws.send_json_to({"type": "continue", "message_id": answer_id})
    done = (await frames_until(ws, is_done))[-1]["message"]
    assert done["status"] == "complete"
    assert set(done["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}  # not "estimated"
    assert (await stored(answer_id)).usage_estimated is None


async def test_an_answer_the_stopping_process_interrupts_is_estimated_too(user, connect):
    ws = await connect(user)
    question = "[sim deltas=500 interval=5]"
    await send(ws, question)
    frames = await frames_until(ws, lambda f: f["type"] == "delta" and f["seq"] >= 3)
    assert await generations_interrupt(timeout=5) == 0
    message = await stored(answer_of(frames)["id"])
    assert message.status == "interrupted" and message.content.startswith("t0 t1 t2 ")
    completion = math.ceil(len(message.content) / 4)
    assert (message.prompt_tokens, message.completion_tokens, message.usage_estimated) == (
        prompt_estimate(question), completion, True)
