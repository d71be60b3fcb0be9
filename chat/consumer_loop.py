"""The consumer's own dispatch loop: where yiweb reaches into Channels' consumer for speed.

`InboxConsumer` replaces three pieces of Channels' `AsyncConsumer` and
`AsyncJsonWebsocketConsumer`, each for what a relayed delta costs (bench/dispatch.py,
docs/benchmarks.md):

- `__call__`: Channels waits on the socket and the channel layer with `asyncio.wait` and
  makes a task per message; here a task per source copies messages into one queue
  (`pump`), which one task dispatches in arrival order, as Channels does.
- `dispatch`: Channels hops into the one database thread before every handler.
- `send_json`: frames skip the session middleware's send wrapper
  (`InstanceSessionWrapper.real_send`, a private attribute).

Each copies Channels' behaviour as of the version requirements.txt pins;
tests/test_consumer_loop.py fails loudly when an upgrade changes what was copied.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.sessions import InstanceSessionWrapper


class InboxConsumer(AsyncJsonWebsocketConsumer):
    """A JSON websocket consumer whose messages, from the socket, the channel layer and its
    own timers (`self.inbox`), go through one queue. Subclasses may override `opened` and
    `closed`, called as the loop starts and ends."""

    def opened(self) -> None:
        pass

    def closed(self) -> None:
        pass

    async def __call__(self, scope, receive, send) -> None:
        """Channels' `AsyncConsumer.__call__`, waiting on its two sources more cheaply.

        Channels waits on the socket and the channel layer with `asyncio.wait`, and makes a
        new task per message; every relayed frame paid for both, and for two extra turns
        of the event loop. Here a task per source copies messages into one queue, and this
        task dispatches them one at a time, in arrival order, as Channels does: 16 µs of
        CPU per layer message against 21 µs (bench/dispatch.py). yiweb always has a
        channel layer. The in-memory layer puts this channel's messages straight into the
        queue (`deliver_to`, chat.layers): one turn of the loop per frame instead of two.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        # Frames skip the session middleware's send: it saves the session and sets its
        # cookie only on an HTTP response, yet consulted the lazy session for every frame,
        # 5–7 µs of CPU each (bench/dispatch.py).
        wrapper = getattr(send, "__self__", None)
        self.frame_send = wrapper.real_send if isinstance(wrapper, InstanceSessionWrapper) else send
        inbox: asyncio.Queue = asyncio.Queue()
        # Also this consumer's own timers' way in: they must not depend on the layer (Redis may be down).
        self.inbox = inbox
        sources = [receive]
        deliver_to = getattr(self.channel_layer, "deliver_to", None)
        if deliver_to is not None:
            deliver_to(self.channel_name, inbox.put_nowait)  # the in-memory layer (chat.layers)
        else:
            sources.append(self.channel_receive)
        pumps = [asyncio.create_task(pump(source, inbox)) for source in sources]
        self.opened()
        try:
            while True:
                message = await inbox.get()
                if isinstance(message, BaseException):
                    raise message
                await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            self.closed()
            # A handler that raised skips disconnect(): its snapshot timers end here too.
            for timer in getattr(self, "timers", ()):
                timer.cancel()
            if deliver_to is not None:
                self.channel_layer.deliver_stop(self.channel_name)
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def send_json(self, content: Any, close: bool = False) -> None:
        """Channels' `send_json`, through `frame_send`."""
        await self.frame_send({"type": "websocket.send", "text": json.dumps(content)})
        if close:
            await self.close(close)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels hops into the one database thread (to close stale connections) before
        # every handler. Here every database call already runs in `database_sync_to_async`,
        # which closes stale connections itself, so the hop only makes each relayed delta
        # and each browser frame queue behind other sockets' writes: measured at 50
        # streams, it alone made the per-delta p99 3 s instead of 0.3 s.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


async def pump(source, inbox: asyncio.Queue) -> None:
    """Copy messages from `source` (the socket, or the channel layer) into `inbox`; a
    failure goes in too, for the dispatching task to raise, as Channels would have."""
    try:
        while True:
            inbox.put_nowait(await source())
    except asyncio.CancelledError as error:
        if asyncio.current_task().cancelling():
            raise  # the consumer is ending: the pump with it
        inbox.put_nowait(error)  # the source itself was cancelled: the consumer must hear it
    except Exception as error:
        inbox.put_nowait(error)
