"""A saved key never appears in the clear anywhere yiweb writes: not in a page, a JSON
answer, a response header, a websocket frame, a log record, the admin, an export, or any
row of any table (issue 15).

A key with a recognisable value is added through the Keys page and used for real: the
simulator answers with it, and a second key points at an API that echoes the request's
Authorization header back in every error body (its GET /models refuses it, so it is saved
only by insisting, and a send with it fails). Then every URL of the app (walked from the
URL patterns, so a new page joins by itself) and the admin's pages are fetched, and all
of it, with the captured log records and a SELECT * of every table, is searched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re

import pytest
from aiohttp import web
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection
from django.test import AsyncClient
from django.urls import get_resolver

from chat import upstream
from chat.models import ApiKey, Attachment, Conversation, Message
from tests.conftest import PASSWORD, session_cookie
from tests.simulator_server import api_served
from tests.test_consumer import frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "sk-canary-5e1f0c3a9b7d4e2f8a6c1b0d9e3f7a25"
ECHOED = "sk-echoed-0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e"
# The whole key, and every part of it bigger than what the pages show (the last four).
FORBIDDEN = [k for key in (KEY, ECHOED) for k in (key, key[:-4], key[3:-4], key[10:30])]


def leaks(text: str) -> list[str]:
    return [part for part in FORBIDDEN if part in text]


@contextlib.asynccontextmanager
async def echoing_api():
    """An OpenAI-compatible API that quotes the request's Authorization header back in
    every error: GET /models a 401, chat completions a 400 (whose detail the app shows)."""

    def echo(request: web.Request, status: int) -> web.Response:
        said = f"Invalid request. Headers: {{'Authorization': '{request.headers.get('Authorization', '')}'}}"
        plain = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"{said} key={plain}"}}, status=status)

    async def models(request: web.Request) -> web.Response:
        return echo(request, 401)

    async def completions(request: web.Request) -> web.Response:
        return echo(request, 400)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", completions)
    async with api_served(app) as url:
        yield url


async def client_for(user) -> AsyncClient:
    client = AsyncClient()
    client.cookies["sessionid"] = await database_sync_to_async(session_cookie)(user)
    return client


def every_app_url(ids: dict[str, int]) -> list[str]:
    """Every GET-able URL of the chat app, its parameters filled with the owner's ids."""
    (chat,) = [p for p in get_resolver().url_patterns if getattr(p, "app_name", None) == "chat"]
    urls = []
    for pattern in chat.url_patterns:
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m[1]]), str(pattern.pattern))
        urls.append(path)
    return urls


@database_sync_to_async
def every_row_of_every_table() -> str:
    dumped = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            try:
                cursor.execute(f'SELECT * FROM "{table}"')
            except OperationalError as error:
                # A contentless FTS5 table (the search's bigrams) holds no text to read; its
                # index is in its shadow tables, which are read like any other.
                assert "does not support scanning" in str(error), error
                continue
            for row in cursor.fetchall():
                dumped.append(repr([bytes(v).decode("utf-8", "replace") if isinstance(v, bytes | memoryview) else v
                                    for v in row]))
    return "\n".join(dumped)


@database_sync_to_async
def make_admin():
    return get_user_model().objects.create_superuser("root", password=PASSWORD)


async def test_a_saved_key_appears_nowhere_in_the_clear(user, simulator_url, connect, caplog, settings, tmp_path):
    caplog.set_level(logging.DEBUG)
    settings.MEDIA_ROOT = tmp_path
    seen: list[tuple[str, str]] = []  # (where, text)

    def saw(where: str, response) -> None:
        headers = "\n".join(f"{name}: {value}" for name, value in response.items())
        cookies = "\n".join(str(morsel) for morsel in response.cookies.values())
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seen.append((where, f"{headers}\n{cookies}\n{body.decode('utf-8', 'replace')}"))

    owner = await client_for(user)
    async with echoing_api() as echo_url:
        # Added through the page: the key verified against the simulator, the echoing one
        # refused (its refusal shown) and then saved by insisting.
        added = await owner.post("/keys/", {"label": "Canary", "key": KEY + "\n", "base_url": simulator_url,
                                            "tier": "free"}, follow=True)
        saw("add", added)
        refused = await owner.post("/keys/", {"label": "Echo", "key": ECHOED, "base_url": echo_url, "tier": "1"})
        assert refused.status_code == 200 and "rejected this key (401)" in refused.content.decode()
        saw("add refused", refused)
        insisted = await owner.post("/keys/", {"label": "Echo", "key": ECHOED, "base_url": echo_url, "tier": "1",
                                               "save_anyway": "on"}, follow=True)
        saw("add insisted", insisted)
        canary, echo = await database_sync_to_async(lambda: list(ApiKey.objects.order_by("pk")))()
        assert (canary.label, echo.label, echo.verified_at) == ("Canary", "Echo", None)

        # The websocket: an answer paid with the key, and one whose upstream echoes it.
        ws = await connect(user)
        await send(ws, "hello", key_id=canary.pk)
        frames = await frames_until(ws, is_done)
        assert frames[-1]["message"]["status"] == "complete"
        conversation_id = frames[-1]["message"]["conversation_id"]
        await send(ws, "again", key_id=echo.pk)
        failed = await frames_until(ws, is_done)
        assert failed[-1]["message"]["error_code"] == "bad_request"
        assert "[hidden]" in failed[-1]["message"]["error_message"]
        await ws.send_json_to({"type": "subscribe", "conversation_id": conversation_id, "after_id": 0})
        frames += failed + await frames_until(
            ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
        seen.append(("websocket frames", json.dumps(frames, ensure_ascii=False)))

        for action in ("verify", "default", "tier"):
            saw(action, await owner.post(f"/keys/{echo.pk}/{action}/", {"tier": "2"}, follow=True))
        question = await database_sync_to_async(
            lambda: Message.objects.filter(conversation_id=conversation_id, role="user").first())()
        ids = {"conversation_id": conversation_id, "key_id": canary.pk, "attachment_id": 0}
        for url in every_app_url(ids):
            if "attachments/" in url:
                continue  # images: bytes of their own, never a key (none is attached here)
            saw(url, await owner.get(url))
        for url in (f"/api/models?key_id={canary.pk}", f"/api/models?key_id={echo.pk}",
                    f"/export/?ids={conversation_id}", "/export/?format=md", "/api/search?q=hello",
                    "/api/conversations?archived=1"):
            saw(url, await owner.get(url))

        admin = await client_for(await make_admin())
        for url in ["/admin/", "/admin/chat/apikey/", f"/admin/chat/apikey/{canary.pk}/change/",
                    f"/admin/chat/apikey/{echo.pk}/change/", f"/admin/chat/apikey/{canary.pk}/delete/",
                    f"/admin/chat/conversation/{conversation_id}/change/", f"/admin/chat/message/{question.pk}/change/",
                    "/admin/chat/message/", f"/admin/auth/user/{user.pk}/change/", "/admin/chat/apikey/?q=Canary"]:
            response = await admin.get(url)
            assert response.status_code == 200, url
            saw(url, response)
        saw("admin change saved", await admin.post(f"/admin/chat/apikey/{canary.pk}/change/",
                                                   {"tier": "3"}, follow=True))
        saw("delete", await owner.post(f"/keys/{echo.pk}/delete/", follow=True))
    await upstream.pool_close()

    assert await database_sync_to_async(lambda: ApiKey.objects.get(pk=canary.pk).tier)() == "3"
    logged = "\n".join(
        f"{r.getMessage()}\n{r.exc_text or ''}\n{logging.Formatter().formatException(r.exc_info) if r.exc_info else ''}"
        for r in caplog.records)
    seen += [("log records", logged), ("database", await every_row_of_every_table())]
    found = {where: leaks(text) for where, text in seen if leaks(text)}
    assert not found, found
    # The walk saw what it should have: the pages name the keys by label and last four.
    pages = "\n".join(text for where, text in seen)
    assert "Canary" in pages and "…7a25" in pages and "rejected this key (401)" in pages
    assert await database_sync_to_async(Attachment.objects.count)() == 0
    assert await database_sync_to_async(Conversation.objects.count)() == 2
