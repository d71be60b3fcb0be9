"""Generations as the rest of the app asks for them: start one, stop one (in whichever
process runs it), ask one for its text so far, wait for one's ending to be stored.

The relay itself is chat/relay.py (which hears these requests through
chat/generation_listener.py), checkpoints, heartbeats and the sweep chat/upkeep.py,
stopping a process chat/shutdown.py, and what this process runs chat/running.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer

from chat.events import BroadcastFailed, generation_group
from chat.models import Message
from chat.outages import layer_outage
from chat.relay import Generation
from chat.requests import RequestPlan
from chat.running import running
from chat.upkeep import upkeep_ensure


def generation_start(*, answer: Message, plan: RequestPlan) -> Generation:
    """Stream `answer` (stored streaming by `exchange_send`, `answer_retry` or `answer_continue`)."""
    generation = Generation(answer, plan)
    generation.task = asyncio.get_running_loop().create_task(generation.run(), name=f"generation-{answer.pk}")
    running.generations[answer.pk] = generation
    upkeep_ensure()
    return generation


async def generation_stop(*, message_id: int) -> None:
    """Ask the process running this generation to stop it (it keeps the partial text)."""
    await get_channel_layer().group_send(generation_group(message_id), {"type": "generation.stop"})


async def generation_snapshot_request(*, message_id: int, reply_channel: str, from_seq: int) -> None:
    """Ask the running generation, in another process, for its text after `from_seq`; the
    reply is a `snapshot` frame (or the `not_saved` done of one whose ending is not stored
    yet). Raises BroadcastFailed."""
    try:
        await get_channel_layer().group_send(
            generation_group(message_id),
            {"type": "generation.snapshot", "reply_channel": reply_channel, "from_seq": from_seq},
        )
    except Exception as error:
        layer_outage.failed(error)
        raise BroadcastFailed(str(error)) from error


def generation_snapshot_here(*, message_id: int, from_seq: int) -> dict[str, Any] | None:
    """The snapshot frame of an answer running in this process, with no trip through the
    layer (which may be down); None if it runs elsewhere or nowhere."""
    generation = running.generations.get(message_id)
    return generation.snapshot_frame(from_seq) if generation is not None else None


async def generation_ending_wait(*, message_id: int | None, timeout: float) -> bool:
    """Wait for an answer of this process whose ending is being stored (its tabs were
    told `not_saved`); True once stored. False at once for any other answer, and after
    `timeout` for one still not stored."""
    generation = running.generations.get(message_id)
    if generation is None or generation.task is None or message_id not in running.ending:
        return False
    done, _ = await asyncio.wait([generation.task], timeout=timeout)
    return bool(done) and message_id not in running.generations
