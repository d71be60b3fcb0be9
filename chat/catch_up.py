"""A socket catching up (docs/websocket.md): the frames of what its tab missed, sent on
`subscribe` or on a resent send (chat/history.py reads them), and the answers still
streaming that it joins mid-way. For each of those the socket asks the running
generation for a snapshot, and holds back the deltas that arrive meanwhile until the
snapshot comes, so the tab gets every seq once and in order; if no generation answers
within SNAPSHOT_TIMEOUT, what the database has stands in. The socket (chat/consumers.py)
keeps one `SnapshotWaits` and lets its deltas and snapshots through `chat_frame`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.db import DatabaseError

from chat import history
from chat.endings import done_event
from chat.events import BroadcastFailed
from chat.generation import generation_snapshot_here, generation_snapshot_request
from chat.history import CatchUp
from chat.models import Message
from chat.outages import database_outage
from chat.upkeep import generation_sweep

if TYPE_CHECKING:
    from chat.consumers import ChatConsumer

# How long to wait for a running generation to answer a snapshot request before
# falling back to the database (its process may have died, or the layer be down).
SNAPSHOT_TIMEOUT = 2.0


class SnapshotWaits:
    """One socket's answers waiting for their snapshot, with the deltas held meanwhile."""

    def __init__(self, socket: ChatConsumer) -> None:
        self.socket = socket
        # message id -> deltas received while waiting for that message's snapshot
        self.awaiting: dict[int, list[dict[str, Any]]] = {}

    async def catch_up_send(self, catch_up: CatchUp, holding: dict[int, int]) -> None:
        """Newer messages, the ending of each answer the tab holds that has ended, and a
        snapshot of each answer still streaming (from where the tab stands, if it holds it).
        A tab that shows another thread than the conversation's gets the whole thread first."""
        if catch_up.thread is not None:
            conversation_id = catch_up.conversation["id"]
            await self.socket.send_json(
                {"type": "thread", "conversation_id": conversation_id, "messages": catch_up.thread}
            )
        for message in catch_up.new:
            await self.socket.send_json({"type": "message", "message": message})
        for message in catch_up.held.values():
            if message["status"] != Message.Status.STREAMING:
                self.awaiting.pop(message["id"], None)
                await self.socket.send_json(done_event(message)[1])
        for message_id in catch_up.streaming:
            await self.snapshot_ask(message_id, from_seq=holding.get(message_id, 0))

    async def snapshot_ask(self, message_id: int, *, from_seq: int) -> None:
        """Join a running answer: deltas are held back until its snapshot arrives. One
        request at a time per answer: a socket repeating `subscribe` gets the pending one's
        reply, not a snapshot per frame."""
        if message_id in self.awaiting:
            return
        self.awaiting[message_id] = []
        frame = generation_snapshot_here(message_id=message_id, from_seq=from_seq)
        if frame is not None:
            await self.socket.chat_frame({"frame": frame})
            return
        timer = asyncio.create_task(self._snapshot_deadline(message_id))
        self.socket.timers.add(timer)
        timer.add_done_callback(self.socket.timers.discard)
        with contextlib.suppress(BroadcastFailed):  # the deadline reads the database instead
            await generation_snapshot_request(
                message_id=message_id, reply_channel=self.socket.channel_name, from_seq=from_seq
            )

    async def _snapshot_deadline(self, message_id: int) -> None:
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        self.socket.inbox.put_nowait({"type": "snapshot.timeout", "message_id": message_id})

    async def snapshot_timeout(self, event: dict[str, Any]) -> None:
        """No running generation answered: read what the database has instead."""
        message_id = event["message_id"]
        if message_id not in self.awaiting:
            return
        try:
            await generation_sweep()
        except DatabaseError as error:
            # It could not end a dead answer now; the next sweep will. The tab still gets
            # what is stored.
            database_outage.failed(error)
        message = await _message_dict(self.socket.user, message_id)
        held = self.awaiting.pop(message_id, [])
        if message is None:
            return
        if message["status"] != Message.Status.STREAMING:
            await self.socket.send_json(done_event(message)[1])
            return
        await self.socket.send_json(
            {"type": "snapshot", "message_id": message_id, "from_seq": 0, "seq": message["seq"],
             "text": message["content"]}
        )
        for delta in held:
            if delta["seq"] > message["seq"]:
                await self.socket.send_json(delta)


@database_sync_to_async
def _message_dict(user, message_id: int) -> dict[str, Any] | None:
    message = Message.objects.filter(pk=message_id, conversation__user=user).first()
    return history.message_to_dict(message) if message else None
