"""Upkeep of this process's running answers: checkpoints, heartbeats, the sweep of answers
whose process died, and the endings the layer could not take yet; and, hourly, the
removal of uploads never sent.

One loop per process writes the text of every running generation that changed about
once per CHECKPOINT_INTERVAL, a slice of them at a time, and refreshes the heartbeat of
those that did not; a generation whose heartbeat goes stale, and stays so once writes
work, belonged to a process that died (see `_stale_interrupt`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from chat.attachments import attachments_sweep
from chat.endings import messages_finish
from chat.events import BroadcastFailed, Event, events_send
from chat.models import Message
from chat.outages import DATABASE_UNAVAILABLE, database_outage, layer_outage
from chat.running import running
from chat.sentences import error_fields, sentence

logger = logging.getLogger(__name__)

# The checkpoint loop ticks this many times per CHECKPOINT_INTERVAL (see `_checkpoint`).
CHECKPOINT_SLICES = 10
# Endings whose `done` frames could not be broadcast (the layer was down), oldest first,
# are sent again once it works; at most this many (tabs that miss one still catch up
# from the database when they next subscribe).
UNDELIVERED_MAX = 1000
# Uploads never sent are removed a day after they came (chat.attachments), here, so that a
# server nobody uploads to removes them too (in the upload view, they waited for the next
# upload). On the database thread every request of this process shares, so in small
# batches: a row with its files is a few ms (100 took 230 ms on a loaded 2-core machine),
# and a backlog goes a batch a second, not in one long hold.
UPLOADS_SWEEP_EVERY = 3600.0
UPLOADS_SWEEP_BATCH = 50
UPLOADS_BACKLOG_EVERY = 1.0


@database_sync_to_async
def _checkpoint_write(rows: list[tuple[int, str, int]], heartbeat_only: list[int]) -> None:
    now = timezone.now()
    with transaction.atomic():
        # One UPDATE per answer: bulk_update's CASE over every row took 16 ms for 50
        # answers of 9 KB, in the database thread but holding the GIL that the relay needs.
        for pk, text, seq in rows:
            # Only while streaming: a tick that lands after the answer ended leaves it be.
            Message.objects.filter(pk=pk, status=Message.Status.STREAMING).update(
                content=text, seq=seq, heartbeat_at=now
            )
        if heartbeat_only:
            Message.objects.filter(pk__in=heartbeat_only, status=Message.Status.STREAMING).update(heartbeat_at=now)


async def endings_tell(events: list[Event]) -> None:
    """Send how answers ended. What the layer cannot take now is sent again once it works
    (`_undelivered_send`); the ending itself, stored already, does not wait for it."""
    try:
        await events_send(events)
    except BroadcastFailed:
        running.undelivered.extend(events)
        del running.undelivered[:-UNDELIVERED_MAX]


async def _undelivered_send() -> None:
    """Broadcast the endings the layer could not take, once it works again."""
    if not running.undelivered or not layer_outage.worth_trying():
        return
    events = running.undelivered[:]
    running.undelivered.clear()
    await endings_tell(events)


def upkeep_ensure() -> None:
    """Start this process's checkpoint-and-sweep loop if it is not running yet."""
    loop = asyncio.get_running_loop()
    if running.upkeep is None or running.upkeep.done() or running.upkeep.get_loop() is not loop:
        running.upkeep = loop.create_task(_upkeep_loop(), name="generation-upkeep")


async def _upkeep_loop() -> None:
    """Checkpoint running answers, a slice every CHECKPOINT_INTERVAL / CHECKPOINT_SLICES;
    sweep dead ones every STALE/2; remove uploads a day old never sent every hour.

    Every process runs this once it has served a websocket, so that an answer left
    streaming by a process that died is ended by whichever process is still alive.
    """
    last_sweep = 0.0
    uploads_due = 0.0  # on the first tick
    broken = False  # an unexpected error would recur every tick: its traceback is logged once
    while True:
        await asyncio.sleep(settings.CHECKPOINT_INTERVAL / CHECKPOINT_SLICES)
        await _undelivered_send()
        try:
            wrote = await _checkpoint()
            now = time.monotonic()
            if now - last_sweep >= settings.GENERATION_STALE_AFTER / 2 or _suspects_due(last_sweep, now):
                last_sweep = now
                await generation_sweep()
                wrote = True
            if now >= uploads_due:
                # Due again in an hour even if this fails: a sweep is not worth a retry every tick.
                uploads_due = now + UPLOADS_SWEEP_EVERY
                if await _unsent_uploads_remove() == UPLOADS_SWEEP_BATCH:
                    uploads_due = now + UPLOADS_BACKLOG_EVERY
                wrote = True
        except DATABASE_UNAVAILABLE as error:
            database_outage.failed(error)  # a database that refuses writes fails every tick: counted
        except Exception:
            if not broken:
                logger.exception("checkpoint or sweep failed; trying again every tick")
            broken = True
        else:
            broken = False
            if wrote:
                database_outage.worked()


@database_sync_to_async
def _unsent_uploads_remove() -> int:
    return attachments_sweep(batch=UPLOADS_SWEEP_BATCH)


async def _checkpoint() -> bool:
    """Write the text of running answers here that changed and were last written at
    least CHECKPOINT_INTERVAL ago; refresh the heartbeat of those that did not change.

    At most 1/CHECKPOINT_SLICES of the running answers per tick, longest unwritten
    first: answers started together (a burst of sends) would otherwise all fall due on
    the same tick, and one write of 50 answers held the relay up for tens of ms once a
    second. Spread out, each answer is still written about once a CHECKPOINT_INTERVAL.
    """
    now = time.monotonic()
    heartbeat_every = settings.GENERATION_STALE_AFTER / 4
    due = sorted(
        (
            g
            for g in running.generations.values()
            if g.conversation_id is not None
            and (
                (g.seq != g.checkpointed_seq and now - g.last_write >= settings.CHECKPOINT_INTERVAL)
                or now - g.last_write >= heartbeat_every
            )
        ),
        key=lambda g: g.last_write,
    )
    rows, heartbeat_only, before = [], [], []
    for generation in due[: math.ceil(len(running.generations) / CHECKPOINT_SLICES)]:
        before.append((generation, generation.checkpointed_seq, generation.last_write))
        if generation.seq != generation.checkpointed_seq:
            rows.append((generation.message_id, generation.text(), generation.seq))
            generation.checkpointed_seq = generation.seq
        else:
            heartbeat_only.append(generation.message_id)
        generation.last_write = now
    if not (rows or heartbeat_only):
        return False
    try:
        await _checkpoint_write(rows, heartbeat_only)
    except BaseException:
        # Not written: due again at the next tick.
        for generation, seq, last_write in before:
            generation.checkpointed_seq, generation.last_write = seq, last_write
        raise
    return True


async def generation_sweep() -> int:
    """Mark answers whose process died mid-stream as interrupted; returns how many."""
    events = await _stale_interrupt(exclude=list(running.generations))
    await endings_tell(events)
    return len(events)


def _suspect_settle() -> float:
    """Seconds a suspect's heartbeat must stay unmoved: the heartbeat interval, and
    long enough for a live owner's checkpoints to go round all its answers once."""
    return max(settings.GENERATION_STALE_AFTER / 4, 2 * settings.CHECKPOINT_INTERVAL)


def _suspects_due(last_sweep: float, now: float) -> bool:
    """Whether a suspect has become due to be ended since the last sweep (one that
    failed is left to the periodic sweep, not retried every tick)."""
    settle = _suspect_settle()
    # A copy, taken at once: the database thread may be sweeping meanwhile.
    return any(last_sweep < since + settle <= now for _, since in list(running.suspects.values()))


@database_sync_to_async
def _stale_interrupt(exclude: list[int]) -> list[Event]:
    """End the answers, not running here, whose heartbeat is over GENERATION_STALE_AFTER
    old and has not moved for `_suspect_settle()` seconds since a sweep found it so.

    A stale heartbeat alone does not mean a dead process: while the database refuses
    writes, the live process that owns an answer cannot refresh it either, and once
    writes work again its checkpoints take up to CHECKPOINT_INTERVAL to refresh them all.
    So a sweep first writes its suspects down, with a write of their rows (if writes
    still fail, no suspicion is written down); a later sweep ends those whose heartbeat
    is still the one it saw, by when a live owner, able to write since, has moved it.
    The ending itself is conditional on that heartbeat, so a refresh that lands between
    this read and the ending's write keeps the answer too.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.GENERATION_STALE_AFTER)
    stale = dict(
        Message.objects.filter(status=Message.Status.STREAMING, heartbeat_at__lt=cutoff)
        .exclude(pk__in=exclude)
        .values_list("pk", "heartbeat_at")
    )
    for pk, (heartbeat, _) in list(running.suspects.items()):
        if stale.get(pk) != heartbeat:
            del running.suspects[pk]  # its heartbeat moved, it ended, or it runs here now
    now = time.monotonic()
    new = [pk for pk in stale if pk not in running.suspects]
    if new:
        Message.objects.filter(pk__in=new, status=Message.Status.STREAMING).update(heartbeat_at=F("heartbeat_at"))
        now = time.monotonic()  # writes work from here on, not from before a lock wait
        running.suspects.update((pk, (stale[pk], now)) for pk in new)
    dead = [pk for pk, (_, since) in running.suspects.items() if now - since >= _suspect_settle()]
    if not dead:
        return []  # nothing to end yet
    error = {
        "status": Message.Status.INTERRUPTED,
        "error_code": "interrupted",
        **error_fields(sentence("restarted")),
    }
    # Without `content` in the fields, the last checkpoint's text and seq are what stays.
    # Only with the heartbeat seen: one that its owner moved meanwhile is alive.
    ended = messages_finish([(pk, error) for pk in dead], heartbeats={pk: running.suspects[pk][0] for pk in dead})
    for pk in dead:
        del running.suspects[pk]
    return [event for events in ended if isinstance(events, list) for event in events]
