"""Two Daphne processes sharing PostgreSQL and Redis behave as one app."""

from __future__ import annotations

import pytest

from tests.live_server import (
    REDIS_TEST_URL,
    Socket,
    app_env,
    manage,
    postgres_available,
    postgres_database,
    redis_available,
    running_app,
    signup,
)

pytestmark = [
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not running on 127.0.0.1:5432"),
    pytest.mark.skipif(not redis_available(), reason="Redis is not running on 127.0.0.1:6379"),
]


@pytest.fixture(scope="module")
def two_processes(simulator_url):
    import redis

    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    with postgres_database() as database_url:
        env = app_env(DATABASE_URL=database_url, REDIS_URL=REDIS_TEST_URL, YI_API_BASE=simulator_url,
                      YI_API_KEY="sk-test", CHECKPOINT_INTERVAL="0.2")
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (first, _), running_app(env) as (second, _):
            yield first, second


def deltas(frames, message_id):
    return [f for f in frames if f["type"] == "delta" and f["message_id"] == message_id]


async def test_websocket_on_one_process_receives_every_delta_of_a_generation_in_the_other(two_processes):
    first, second = two_processes
    session = signup(first, "carol")
    sender = await Socket.open(first, session)
    watcher = await Socket.open(second, session)
    try:
        await sender.send({"type": "send", "conversation_id": None, "text": "[sim deltas=1 interval=0]", "model": "yi-large"})
        frames = await sender.until(lambda f: f["type"] == "done")
        conversation_id = next(f["conversation"]["id"] for f in frames if f["type"] == "conversation")

        await watcher.send({"type": "subscribe", "conversation_id": conversation_id})
        await watcher.until(lambda f: f["type"] == "subscribed")
        await sender.send({"type": "send", "conversation_id": conversation_id, "text": "[sim deltas=300 interval=1]",
                           "model": "yi-large"})
        seen = await watcher.until(lambda f: f["type"] == "done")
        answer_id = seen[-1]["message_id"]
        received = deltas(seen, answer_id)
        assert [d["seq"] for d in received] == list(range(1, len(received) + 1))
        expected = "".join(f"t{i} " for i in range(300))
        assert "".join(d["text"] for d in received) == expected
        assert seen[-1]["message"]["content"] == expected
    finally:
        await sender.close()
        await watcher.close()


async def test_stop_pressed_on_one_process_stops_the_generation_running_in_the_other(two_processes):
    first, second = two_processes
    session = signup(first, "dave")
    sender = await Socket.open(first, session)
    stopper = await Socket.open(second, session)
    try:
        await sender.send({"type": "send", "conversation_id": None, "text": "[sim deltas=2000 interval=5]",
                           "model": "yi-large"})
        frames = await sender.until(lambda f: f["type"] == "delta" and f["seq"] >= 3)
        conversation_id = next(f["conversation"]["id"] for f in frames if f["type"] == "conversation")
        answer_id = frames[-1]["message_id"]
        await stopper.send({"type": "subscribe", "conversation_id": conversation_id})
        await stopper.send({"type": "stop", "message_id": answer_id})
        done = (await stopper.until(lambda f: f["type"] == "done", timeout=10))[-1]
        assert done["message"]["status"] == "stopped"
        assert 0 < len(done["message"]["content"]) < len("".join(f"t{i} " for i in range(2000)))
    finally:
        await sender.close()
        await stopper.close()
