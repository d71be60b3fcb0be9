"""Keys never reach a page, a frame, a stored row or a log line, even when the upstream echoes them."""

from __future__ import annotations

import json
import logging

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from chat.upstream_errors import secret_mask
from tests.simulator_server import canned_api
from tests.test_consumer import frames_until, is_done, send

KEY = "sk-live-7f3a9c2e41d84b6fa0e5c3d2b1a09f87"


@pytest.mark.parametrize("body", [
    # A proxy that echoes the request's headers in its error.
    json.dumps({"error": {"message": f"Invalid request. Headers: {{'Authorization': 'Bearer {KEY}'}}"}}),
    # Plain text quoting the key alone, and again cut by a newline.
    f"bad key {KEY}\nAuthorization: Bearer {KEY}",
])
@pytest.mark.django_db(transaction=True)
async def test_an_upstream_error_that_echoes_the_key_shows_stores_and_logs_it_masked(
    user, connect, settings, caplog, body
):
    caplog.set_level(logging.DEBUG)
    settings.YI_API_KEY = KEY
    async with canned_api(body.encode(), {"Content-Type": "application/json"}, status=400) as url:
        settings.YI_API_BASE = url
        ws = await connect(user)
        await send(ws, "hello")
        frames = await frames_until(ws, is_done)
    done = frames[-1]["message"]
    stored = await database_sync_to_async(Message.objects.get)(pk=done["id"])
    assert done["status"] == "error" and done["error_code"] == "bad_request"
    assert done["error_message"].startswith("The Yi API rejected the request as malformed (400).")
    assert "[hidden]" in done["error_message"]
    for where, text in [("frames", json.dumps(frames)), ("row", stored.error_message), ("logs", caplog.text)]:
        assert KEY not in text and KEY[3:] not in text, where


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abc.def-ghi",
    "authorization=xyz123secret",
    "token sk-abcdefgh12345",
    "hex " + "a1" * 20,
])
def test_key_like_strings_are_masked(text):
    masked = secret_mask(text)
    assert "[hidden]" in masked
    assert not any(part in masked for part in ("abc.def-ghi", "xyz123secret", "sk-abcdefgh12345", "a1" * 20))


def test_ordinary_error_text_is_left_alone():
    text = "max_tokens must be less than or equal to 16384; model yi-large-turbo not found"
    assert secret_mask(text) == text
