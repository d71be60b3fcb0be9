"""A websocket lives no longer than the session that opened it."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session

from chat.accounts import CLOSE_SIGNED_OUT
from tests.test_consumer import frames_until, is_done, send

pytestmark = pytest.mark.django_db(transaction=True)


async def closed_with(ws) -> int:
    output = await ws.receive_output(timeout=5)
    assert output["type"] == "websocket.close", output
    return output.get("code")


async def test_signing_out_closes_that_sessions_sockets_at_once_and_not_another_sessions(user, connect):
    from django.test import AsyncClient

    other_sessions = [await connect(user), await connect(user)]
    client = AsyncClient()
    await database_sync_to_async(client.force_login)(user)
    # The socket of the session that signs out: opened with the client's own cookie.
    from channels.testing import WebsocketCommunicator

    from yiweb.asgi import application

    own = WebsocketCommunicator(application, "/ws/chat/", headers=[
        (b"origin", b"http://localhost"), (b"host", b"localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())])
    assert (await own.connect())[0]
    response = await client.post("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(own) == CLOSE_SIGNED_OUT
    # Other sessions of the same person stay.
    for ws in other_sessions:
        await send(ws, "[sim deltas=1 interval=0]")
        assert (await frames_until(ws, is_done))[-1]["message"]["status"] == "complete"


async def test_deactivating_an_account_closes_all_its_sockets(user, other_user, connect):
    first, second, bystander = await connect(user), await connect(user), await connect(other_user)
    user.is_active = False
    await database_sync_to_async(user.save)()
    assert await closed_with(first) == CLOSE_SIGNED_OUT
    assert await closed_with(second) == CLOSE_SIGNED_OUT
    await send(bystander, "[sim deltas=1 interval=0]")
    assert (await frames_until(bystander, is_done))[-1]["message"]["status"] == "complete"


async def test_a_frame_after_the_session_expired_or_vanished_closes_the_socket_and_stores_nothing(
    user, connect, monkeypatch
):
    from chat import consumers
    from chat.models import Message

    monkeypatch.setattr(consumers, "SESSION_RECHECK_EVERY", 0.0)  # 30 s in the running app
    ws = await connect(user)
    await database_sync_to_async(Session.objects.all().delete)()  # expired and cleared, or flushed elsewhere
    await send(ws, "after the session ended")
    assert await closed_with(ws) == CLOSE_SIGNED_OUT
    assert not await database_sync_to_async(Message.objects.exists)()

