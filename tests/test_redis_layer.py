"""chat.redis_layer against a real redis-server that the test stops and starts again."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import redis

from chat import redis_layer
from chat.outages import layer_outage
from chat.redis_layer import RedisPubSubChannelLayer
from tests.redis_server import OwnRedis, own_redis, redis_server_available

pytestmark = pytest.mark.skipif(not redis_server_available(), reason="redis-server is not installed")


@pytest.fixture
def server():
    with own_redis() as running:
        yield running


@pytest.fixture(autouse=True)
def outage_reset():
    layer_outage.worked()
    yield
    layer_outage.since, layer_outage.failures = None, 0


def subscriptions(server: OwnRedis) -> set[str]:
    return {name.decode() for name in redis.Redis(port=server.port).pubsub_channels()}


async def heard(layer, channel: str, timeout: float = 5.0) -> dict:
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def layer_with_group(server: OwnRedis, group: str = "conversation.1"):
    layer = RedisPubSubChannelLayer(hosts=[{"address": server.url, "socket_connect_timeout": 1}])
    channel = await layer.new_channel()
    receiving = asyncio.create_task(layer.receive(channel))  # as a consumer's pump does, for good
    await layer.group_add(group, channel)
    return layer, channel, receiving


async def test_the_first_publish_after_redis_restarts_is_delivered(server):
    layer, channel, receiving = await layer_with_group(server)
    await layer.group_send("conversation.1", {"type": "chat.frame", "n": 1})
    assert (await asyncio.wait_for(receiving, 5))["n"] == 1
    server.stop()
    server.start()
    await until(lambda: layer_outage.down is False and "asgi__group__conversation.1" in subscriptions(server))
    await layer.group_send("conversation.1", {"type": "chat.frame", "n": 2})
    assert (await heard(layer, channel))["n"] == 2
    await layer.flush()


async def test_a_group_joined_while_redis_is_down_is_heard_once_it_is_back(server):
    layer, channel, receiving = await layer_with_group(server)
    server.stop()
    await asyncio.sleep(1.2)  # the receive task has met the outage (and tried to reconnect)
    await layer.group_add("conversation.2", channel)  # does not raise: the layer remembers it
    server.start()
    await until(lambda: "asgi__group__conversation.2" in subscriptions(server))
    await layer.group_send("conversation.2", {"type": "chat.frame", "n": 3})
    assert (await asyncio.wait_for(receiving, 5))["n"] == 3
    await layer.flush()


async def test_a_group_left_while_redis_is_down_is_unsubscribed_once_it_is_back(server):
    layer, channel, receiving = await layer_with_group(server)
    await layer.group_add("conversation.3", channel)
    assert "asgi__group__conversation.3" in subscriptions(server)
    server.stop()
    for group in ("conversation.1", "conversation.3"):
        await layer.group_discard(group, channel)  # does not raise
    receiving.cancel()  # the socket closed: its own channel goes too
    await asyncio.gather(receiving, return_exceptions=True)
    server.start()
    await until(lambda: layer_outage.down is False and subscriptions(server) == set())
    await layer.flush()


async def test_a_group_left_while_the_receive_task_drops_the_connection_is_unsubscribed_later(server):
    """Seen in CI: after an outage, the receive task dropped the shard's broken Pub/Sub
    connection while a closing socket's unsubscribe was writing on it, and redis-py raised
    AttributeError (its writer was None) out of the socket's disconnect."""
    layer, channel, receiving = await layer_with_group(server)
    await layer.group_add("conversation.4", channel)
    shard = layer._get_layer()._shards[0]
    connection = shard._pubsub.connection
    write = connection._send_packed_command

    async def dropped_midway(command):
        # What the receive task's disconnect does to the connection at that moment.
        connection._writer = None
        connection._send_packed_command = write
        await write(command)

    connection._send_packed_command = dropped_midway
    await layer.group_discard("conversation.4", channel)  # does not raise
    await until(lambda: layer_outage.down is False and "asgi__group__conversation.4" not in subscriptions(server))
    await layer.group_send("conversation.1", {"type": "chat.frame", "n": 4})
    assert (await asyncio.wait_for(receiving, 5))["n"] == 4
    await layer.flush()


async def test_ten_outages_leave_redis_subscribed_to_exactly_what_the_sockets_want(server):
    """Sockets come and go during each outage; afterwards Redis holds no subscription
    nobody wants (before: every failed unsubscribe stayed, 138 after a few outages)."""
    layer, channel, receiving = await layer_with_group(server)
    for outage in range(10):
        await layer.group_add(f"conversation.{100 + outage}", channel)
        server.stop()
        await layer.group_discard(f"conversation.{100 + outage}", channel)
        await layer.group_add(f"user.{outage}", channel)
        if outage:
            await layer.group_discard(f"user.{outage - 1}", channel)
        server.start()
        wanted = {channel, "asgi__group__conversation.1", f"asgi__group__user.{outage}"}
        await until(lambda: subscriptions(server) == wanted)
    await layer.group_send("user.9", {"type": "chat.frame", "n": 10})
    assert (await asyncio.wait_for(receiving, 5))["n"] == 10
    await layer.flush()


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(server, caplog):
    caplog.set_level(logging.INFO)
    layer, channel, receiving = await layer_with_group(server)
    server.stop()
    failed = 0
    for _ in range(200):
        try:
            await layer.group_send("conversation.1", {"type": "chat.frame"})
        except redis_layer.REDIS_DOWN:
            failed += 1
    await asyncio.sleep(1.5)  # the receive task keeps failing meanwhile
    server.start()
    await until(lambda: layer_outage.down is False)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failed == 200
    assert [r.name for r in records] == ["chat.outages", "chat.outages"], [r.getMessage() for r in records]
    assert "failing" in records[0].getMessage() and "works again" in records[1].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    await layer.flush()


def test_the_channels_redis_internals_the_layer_reaches_into_are_there():
    """chat.redis_layer overrides and reads private parts of channels_redis 4.3; an upgrade
    that renames them must fail here, loudly, not quietly lose outage handling."""
    import channels_redis
    from channels_redis import pubsub

    assert channels_redis.__version__ == "4.3.0", "re-check chat/redis_layer.py against the new channels_redis"
    shard = pubsub.RedisSingleShardConnection({"address": "redis://127.0.0.1:1"}, None)
    for name in ("_lock", "_pubsub", "_subscribed_to", "_redis"):
        assert hasattr(shard, name), name
    for name in ("_ensure_redis", "_ensure_receiver", "_do_receiving", "_receive_message", "publish", "subscribe",
                 "unsubscribe"):
        assert callable(getattr(pubsub.RedisSingleShardConnection, name)), name
    loop_layer = pubsub.RedisPubSubLoopLayer(hosts=["redis://127.0.0.1:1"])
    assert isinstance(loop_layer._shards[0], pubsub.RedisSingleShardConnection)
    assert loop_layer.channels == {} and loop_layer.groups == {}
    assert callable(loop_layer._get_shard)


@pytest.mark.django_db(transaction=True)
async def test_a_send_while_redis_is_down_is_run_and_its_tab_told_then_learns_the_end(user, connect, server, settings):
    """Before: the broadcast raised before the generation started, the socket closed with
    1011, nothing went upstream, and the sweep later ended an empty answer as interrupted."""
    from channels.db import database_sync_to_async

    from chat.models import Message
    from tests.test_consumer import answer_of, frames_until, is_done, send

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "chat.redis_layer.RedisPubSubChannelLayer",
                                           "CONFIG": {"hosts": [{"address": server.url, "socket_connect_timeout": 1}]}}}
    ws = await connect(user)
    server.stop()
    await send(ws, "[sim deltas=20 interval=1]", client_id="during")
    frames = await frames_until(ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant")
    assert [f["type"] for f in frames] == ["subscribed", "conversation", "message", "message"]
    answer = answer_of(frames)

    @database_sync_to_async
    def stored():
        return Message.objects.get(pk=answer["id"])

    async with asyncio.timeout(10):
        while (row := await stored()).status == "streaming":
            await asyncio.sleep(0.05)
    assert (row.status, row.content) == ("complete", "".join(f"t{i} " for i in range(20)))

    server.start()
    await ws.send_json_to({"type": "subscribe", "conversation_id": answer["conversation_id"],
                           "holding": [{"message_id": answer["id"], "last_seq": 0}], "after_id": answer["id"]})
    done = (await frames_until(ws, is_done))[-1]
    assert done["message"]["content"] == row.content


async def test_two_deployments_on_one_redis_neither_hears_nor_stops_the_other(simulator_url):
    """Pub/Sub ignores Redis's database number: before, a tab of one deployment saw the
    other's answers in the conversation with the same id, and its Stop stopped them."""
    from tests.live_server import Socket, app_env, manage, running_app, signup, sqlite_database

    with own_redis() as redis_server, sqlite_database() as first_db, sqlite_database() as second_db:
        apps = []
        for database_url, redis_db in ((first_db, 1), (second_db, 2)):
            env = app_env(DATABASE_URL=database_url, REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/{redis_db}",
                          YI_API_BASE=simulator_url, YI_API_KEY="sk-test")
            manage("migrate", "--noinput", env=env)
            apps.append(env)
        with running_app(apps[0]) as (first, _), running_app(apps[1]) as (second, _):
            mine = await Socket.open(first, signup(first, "una"))
            theirs = await Socket.open(second, signup(second, "vic"))
            # Both deployments' first conversation and first answer get the same ids.
            await theirs.send({"type": "send", "conversation_id": None, "text": "[sim deltas=1 interval=0]",
                               "model": "yi-large"})
            await theirs.until(lambda f: f["type"] == "done")
            await mine.send({"type": "send", "conversation_id": None, "text": "[sim deltas=300 interval=5]",
                             "model": "yi-large"})
            my_frames = await mine.until(lambda f: f["type"] == "delta" and f["seq"] >= 3)
            my_answer = my_frames[-1]["message_id"]
            # The other deployment's tab watches its own conversation 1 and presses Stop on
            # the message id that my answer has in my deployment.
            await theirs.send({"type": "stop", "message_id": my_answer})
            heard = []
            with contextlib.suppress(TimeoutError):
                while True:
                    heard.append(await theirs.receive(timeout=1.0))
            done = (await mine.until(lambda f: f["type"] == "done", timeout=30))[-1]
            await mine.close()
            await theirs.close()
    assert [f for f in heard if f["type"] in ("delta", "snapshot", "done", "message")] == []
    assert done["message"]["status"] == "complete"
    assert done["message"]["content"] == "".join(f"t{i} " for i in range(300))
