"""The in-memory channel layer, with its clean-up throttled and direct delivery.

Channels' InMemoryChannelLayer walks every channel and every group to drop expired
messages and memberships on every send and every receive: work proportional to the
number of open sockets, done once per relayed delta per socket. Profiled at 50
streams it was 8% of the process. Expiry is measured in tens of seconds (`expiry`,
`group_expiry`), so cleaning at most once a second changes nothing anyone can see.

Direct delivery: a receiver in this process (a websocket consumer) can have a channel's
messages handed to it as they are sent (`deliver_to`), instead of waiting on `receive`.
Through the queue, every relayed frame woke a task to take it off the channel and another
to handle it: under load each wake is a whole turn of the busy event loop, and at 50
streams the two turns were 14 ms of a delta's p99. Delivered messages are not copied
(Channels deep-copies each one, 2% of the process at 50 streams): a group's members
share one message, and no receiver in yiweb changes a message it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_EVERY = 1.0  # seconds


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _cleaned_at = 0.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._receivers: dict[str, Callable[[dict], None]] = {}
        self._groups_of: dict[str, set[str]] = {}  # a receiving channel's groups

    def deliver_to(self, channel: str, receiver: Callable[[dict], None]) -> None:
        """Hand every message sent to `channel` to `receiver`, at once, from now on."""
        self._receivers[channel] = receiver

    def deliver_stop(self, channel: str) -> None:
        """No more deliveries to `channel`, and out of the groups it is still in (its
        consumer may have ended without leaving them); only its own groups are visited."""
        self._receivers.pop(channel, None)
        for group in self._groups_of.pop(channel, ()):
            members = self.groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self.groups[group]

    async def group_add(self, group, channel):
        await super().group_add(group, channel)
        if channel in self._receivers:
            self._groups_of.setdefault(channel, set()).add(group)

    async def group_discard(self, group, channel):
        await super().group_discard(group, channel)
        groups = self._groups_of.get(channel)
        if groups is not None:
            groups.discard(group)

    async def send(self, channel, message):
        receiver = self._receivers.get(channel)
        if receiver is None:
            return await super().send(channel, message)
        assert isinstance(message, dict), "message is not a dict"
        receiver(message)

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY:
            self._cleaned_at = now
            super()._clean_expired()

    async def group_send(self, group, message):
        # Channels sends to each member in a task of its own and waits on them with
        # as_completed: two tasks and a queue per relayed frame, for sends that never wait.
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass
