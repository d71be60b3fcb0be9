"""A generation's own channel on the channel layer: the run listens there, in the group of
each of its answers (`generation.<message id>`), so that Stop and "what do I have so far"
requests reach it from any process. chat/generation.py sends them; the run itself is
chat/relay.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from chat.events import generation_group, layer_message
from chat.outages import layer_outage
from chat.running import running

if TYPE_CHECKING:
    from chat.relay import Generation


class GenerationListener:
    """A run's channel, and the groups of its answers it listens in."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.groups: list[int] = [generation.message_id]  # the run's answers whose groups reach it (stop, snapshots)
        self.channel: str | None = None

    async def listen(self) -> None:
        """Answer stop and snapshot requests sent to this generation's group from any process."""
        layer = get_channel_layer()
        self.channel = await layer.new_channel()
        for message_id in self.groups:
            await self._group_add(message_id)
        while True:
            request = await layer.receive(self.channel)
            try:
                await self._answer(layer, request)
            except Exception as error:  # a reply the layer could not take: the tab's deadline reads the database
                layer_outage.failed(error)

    async def group_join(self, message_id: int) -> None:
        self.groups.append(message_id)
        if self.channel:  # else the listener joins it when it starts
            await self._group_add(message_id)

    async def _group_add(self, message_id: int) -> None:
        try:
            await get_channel_layer().group_add(generation_group(message_id), self.channel)
        except Exception as error:  # the layer joins it when it works again (chat.redis_layer)
            layer_outage.failed(error)

    async def _answer(self, layer, request: dict[str, Any]) -> None:
        if request.get("type") == "generation.stop":
            # A run whose last answer has ended has nothing to stop.
            if self.generation.message_id not in running.ending:
                self.generation.stop_requested = True
                if self.generation.task is not None:
                    self.generation.task.cancel()
        elif request.get("type") == "generation.snapshot":
            frame = self.generation.snapshot_frame(int(request.get("from_seq") or 0))
            await layer.send(request["reply_channel"], layer_message(frame))

    async def leave(self) -> None:
        """Leave the groups (the run has ended)."""
        if not self.channel:
            return
        for message_id in self.groups:
            try:
                await get_channel_layer().group_discard(generation_group(message_id), self.channel)
            except Exception as error:  # the layer drops it when it works again (chat.redis_layer)
                layer_outage.failed(error)
