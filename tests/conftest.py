"""Shared fixtures: a real Yi API simulator over HTTP, signed-in users, websockets."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from chat import upstream
from tests.simulator_server import running_simulator
from yiweb.asgi import application

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def simulator_url():
    """The simulator as a Daphne subprocess, pacing deltas 1 ms apart unless a test asks otherwise."""
    with running_simulator(env={"SIMULATOR_DELTA_MS": "1"}) as url:
        yield url


@pytest.fixture(autouse=True)
def upstream_settings(settings, simulator_url):
    """Point the app at the simulator and make retries and checkpoints quick."""
    settings.YI_API_BASE = simulator_url
    settings.YI_API_KEY = "sk-test"
    settings.YI_SIMULATOR = False
    settings.UPSTREAM_RETRY_BASE = 0.01
    settings.UPSTREAM_MAX_RETRIES = 2
    settings.CHECKPOINT_INTERVAL = 0.05
    # Many tests have one person send a burst; the limits have tests of their own (test_limits.py).
    settings.USER_ANSWERS_AT_ONCE = 1000
    settings.USER_SENDS_PER_MINUTE = 10000
    # The test key would be paced as Free (4 requests a minute); pacing has tests of its own (test_pacing.py).
    settings.PACING = False
    return settings


@pytest.fixture(autouse=True)
def running_forgotten():
    """Each test starts with a process that runs nothing (chat/running.py): a generation or
    an upkeep loop of an earlier test's event loop is not this test's."""
    yield
    from chat.running import running

    running.reset()


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("bob", password=PASSWORD)


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
async def connect():
    """Open signed-in websockets to /ws/chat/; all are disconnected at the end of the test."""
    opened: list[WebsocketCommunicator] = []

    async def open_socket(user, *, origin: bytes = b"http://localhost") -> WebsocketCommunicator:
        from channels.db import database_sync_to_async

        cookie = await database_sync_to_async(session_cookie)(user)
        communicator = WebsocketCommunicator(
            application, "/ws/chat/",
            headers=[(b"origin", origin), (b"host", b"localhost"), (b"cookie", f"sessionid={cookie}".encode())],
        )
        opened.append(communicator)
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    yield open_socket
    for communicator in opened:
        await communicator.disconnect()
    await upstream.pool_close()
