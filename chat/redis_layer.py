"""The Redis channel layer (channels_redis's Pub/Sub layer), made to ride out an outage.

What channels_redis 4.3's RedisPubSubChannelLayer does during and after a Redis outage,
as measured for issue 11:
- a `group_add` that fails raises to the consumer (its socket closed with 1011), and the
  group stays in the layer's own table but is never subscribed in Redis, so once Redis is
  back the socket hears nothing of that group;
- an unsubscribe that fails stays subscribed for good (redis-py puts every channel it
  knows back on reconnect): 138 subscriptions were left with no tab open;
- its receive task logs a traceback every second for the whole outage;
- the first publish on a pooled connection that Redis dropped fails, though Redis is up.

Here subscribing and unsubscribing never raise. What the process wants to hear is the
layer's own table (its channels and groups); whenever Redis failed one of those commands,
the shard puts Redis in line with that table as soon as Redis answers again
(`_Shard._reconcile`). A publish that fails is tried once more on a new connection. The
receive task logs nothing itself: `chat.outages.layer_outage` says once that the layer
fails and once that it works again.

This reaches into channels_redis's private classes: the loop layer's `_shards`, and the
shard's `_lock`, `_pubsub`, `_subscribed_to`, `_ensure_redis`, `_do_receiving` and
`_receive_message`. channels-redis is pinned; tests/test_layers.py fails if they change.
"""

from __future__ import annotations

import asyncio

from channels_redis import pubsub as channels_pubsub
from channels_redis.utils import _wrap_close
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chat.outages import layer_outage

# What Redis being down or unreachable looks like to redis-py's asyncio client.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
# ...and what it looks like on the shard's one Pub/Sub connection, which the receive task
# and (un)subscribes share: when the receive task drops the broken connection while an
# unsubscribe is writing on it, redis-py 8.1 writes on the writer it just set to None
# (AttributeError: 'NoneType' object has no attribute 'writelines'; redis/redis-py#3546
# is the same race). Seen in CI as a socket's disconnect raising after an outage.
PUBSUB_CONNECTION_LOST = (*REDIS_DOWN, AttributeError, TypeError)
RECONNECT_EVERY = 0.5  # seconds between tries to reach Redis again while it is down


class _Shard(channels_pubsub.RedisSingleShardConnection):
    def __init__(self, host, channel_layer):
        super().__init__(host, channel_layer)
        self.in_line = True  # False once Redis failed a (un)subscribe: reconcile when it answers

    async def publish(self, channel, message):
        try:
            await super().publish(channel, message)
        except REDIS_DOWN:
            # redis-py dropped the broken connection from its pool: a connection Redis
            # closed while it restarted fails once though Redis is back.
            await super().publish(channel, message)

    async def subscribe(self, channel):
        try:
            await super().subscribe(channel)
        except PUBSUB_CONNECTION_LOST as error:
            self._out_of_line(error)

    async def unsubscribe(self, channel):
        try:
            await super().unsubscribe(channel)
        except PUBSUB_CONNECTION_LOST as error:
            self._out_of_line(error)

    def _out_of_line(self, error: BaseException) -> None:
        self.in_line = False
        layer_outage.failed(error)
        self._ensure_receiver()  # it is what reconciles

    def wanted(self) -> set[str]:
        """The channels and groups of this process that live on this shard."""
        layer = self.channel_layer
        return {name for name in (*layer.channels, *layer.groups) if layer._get_shard(name) is self}

    async def _reconcile(self) -> None:
        """Subscribe Redis to what this process wants on this shard, and to nothing else."""
        async with self._lock:
            self._ensure_redis()
            await self._redis.ping()  # Redis answers (when nothing differs, nothing else would ask it)
            wanted = self.wanted()
            subscribed = {name.decode() if isinstance(name, bytes) else name for name in self._pubsub.channels}
            if missing := wanted - subscribed:
                await self._pubsub.subscribe(*missing)
            if extra := subscribed - wanted:
                await self._pubsub.unsubscribe(*extra)
            self._subscribed_to = wanted
            self.in_line = True

    async def _do_receiving(self):
        while True:
            try:
                if not self.in_line:
                    await self._reconcile()
                    layer_outage.worked()
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # redis-py reconnects on the next read and re-subscribes what it knew; what
                # it did not know (or should have dropped) is put right by _reconcile.
                self.in_line = False
                layer_outage.failed(error)
                await asyncio.sleep(RECONNECT_EVERY)


class _LoopLayer(channels_pubsub.RedisPubSubLoopLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shards = [_Shard(shard.host, self) for shard in self._shards]


class RedisPubSubChannelLayer(channels_pubsub.RedisPubSubChannelLayer):
    def _get_layer(self):
        # channels_redis's own, with the loop layer above instead of its own.
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
            return layer
