"""Every malformed frame gets a specific error, the socket stays open, and nothing is stored."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.test_consumer import conversation_id_of, frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)

BAD_FRAME = "The page sent something the server did not understand. Reload the page."
SEND = {"type": "send", "conversation_id": None, "text": "hi", "model": "yi-large"}


def raw_send(**fields) -> str:
    return json.dumps({**SEND, **fields})


@pytest.mark.parametrize("raw, code", [
    ("", "bad_frame"),
    (b"\x00\x01binary", "bad_frame"),
    ("[" * 200_000 + "]" * 200_000, "bad_frame"),
    ("{" * 100_000, "bad_frame"),
    ("NaN", "bad_frame"),
    ('"just a string"', "bad_frame"),
    ('{"type": 5}', "bad_frame"),
    ('{"type": ["send"]}', "bad_frame"),
    ('{"type": "send", "conversation_id": null, "text": "hi", "model": "yi-large", "max_tokens": 1e400}', "bad_params"),
    ('{"type": "send", "conversation_id": null, "text": "hi", "model": "yi-large", "temperature": 1' + "0" * 400 + "}",
     "bad_params"),
    ('{"type": "send", "conversation_id": null, "text": "hi", "model": "yi-large", "top_p": Infinity}', "bad_frame"),
    ('{"type": "send", "conversation_id": null, "text": "hi", "model": "\\ud800"}', "unknown_model"),
    ('{"type": "send", "conversation_id": null, "text": "hi", "model": "yi-large", "client_id": "\\ud800"}',
     "bad_frame"),
    (raw_send(client_id="x" * 10 + "\x00"), "bad_frame"),
    (raw_send(client_id={"a": 1}), "bad_frame"),
    (raw_send(conversation_id=10**400), "not_found"),
    (raw_send(conversation_id="1e400"), "not_found"),
    ('{"type": "subscribe", "conversation_id": {"nested": [1, 2]}}', "not_found"),
    ('{"type": "subscribe", "conversation_id": 99999999999999999999999999}', "not_found"),
])
async def test_a_malformed_frame_gets_its_error_and_the_socket_goes_on(user, connect, raw, code):
    ws = await connect(user)
    if raw == "":
        await ws.input_queue.put({"type": "websocket.receive", "text": ""})  # the test client refuses to send one
    elif isinstance(raw, bytes):
        await ws.send_to(bytes_data=raw)
    else:
        await ws.send_to(text_data=raw)
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == code, error
    assert "client_id" not in error or error["client_id"].isascii()
    # The same socket still works, and nothing of the bad frame was stored.
    assert await database_sync_to_async(Message.objects.count)() == 0
    await send(ws, "[sim deltas=1 interval=0]")
    assert (await frames_until(ws, is_done))[-1]["message"]["status"] == "complete"


async def test_a_bad_client_id_never_fails_another_users_send_made_at_the_same_moment(user, other_user, connect):
    """Before: the lone surrogate broke the duplicate check that runs for the whole batch,
    so the other person's message was not stored and their socket closed with 1011."""
    for round_ in range(5):
        hostile, honest = await connect(user), await connect(other_user)
        await asyncio.gather(
            hostile.send_to(text_data=raw_send(client_id="\ud800", text=f"bad {round_}")),
            honest.send_to(text_data=raw_send(client_id=f"good-{round_}", text=f"[sim deltas=1 interval=0] {round_}")),
        )
        frames = await frames_until(honest, is_done)
        assert frames[-1]["message"]["status"] == "complete"
        assert conversation_id_of(frames)
        assert (await hostile.receive_json_from(timeout=5))["code"] == "bad_frame"
        await hostile.disconnect()
        await honest.disconnect()
    contents = await database_sync_to_async(
        lambda: list(Message.objects.filter(role="user").values_list("content", flat=True)))()
    assert sorted(contents) == [f"[sim deltas=1 interval=0] {i}" for i in range(5)]
