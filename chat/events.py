"""How state changes reach browsers: channel-layer groups and frames.

A frame is the JSON object a browser receives (docs/websocket.md). It travels through
the channel layer wrapped as {"type": "chat.frame", "frame": {...}}, which every
consumer forwards to its socket. Image bytes never travel here (the layer's messages
are capped at 1 MB); ids do.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from chat.outages import layer_outage

# A frame and the group it goes to, returned by a write for its caller to broadcast.
Event = tuple[str, dict[str, Any]]


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def generation_group(message_id: int) -> str:
    """The process running a generation listens here for stop and snapshot requests."""
    return f"generation.{message_id}"


def layer_message(frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat.frame", "frame": frame}


class BroadcastFailed(Exception):
    """The channel layer could not take a frame (Redis is down or unreachable). Nothing
    stored depends on it: tabs that miss a frame catch up from the database (docs/websocket.md)."""


async def frame_send(group: str, frame: dict[str, Any]) -> None:
    """Send a frame to a group; raises BroadcastFailed, counted in `layer_outage` (while the
    layer is down, tried only every outages.TRY_EVERY seconds, failing at once in between)."""
    if not layer_outage.worth_trying():
        layer_outage.skipped()
        raise BroadcastFailed("the channel layer is down")
    try:
        await get_channel_layer().group_send(group, layer_message(frame))
    except Exception as error:
        layer_outage.failed(error)
        raise BroadcastFailed(str(error)) from error
    layer_outage.worked()


async def events_send(events: list[Event]) -> None:
    """Broadcast a committed write's frames, in order; raises BroadcastFailed."""
    for group, frame in events:
        await frame_send(group, frame)
