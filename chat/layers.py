"""The in-memory channel layer, with its clean-up throttled.

Channels' InMemoryChannelLayer walks every channel and every group to drop expired
messages and memberships on every send and every receive: work proportional to the
number of open sockets, done once per relayed delta per socket. Profiled at 50
streams it was 8% of the process. Expiry is measured in tens of seconds (`expiry`,
`group_expiry`), so cleaning at most once a second changes nothing anyone can see.
"""

from __future__ import annotations

import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer

CLEAN_EVERY = 1.0  # seconds


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    _cleaned_at = 0.0

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
