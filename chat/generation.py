"""Generations: one assistant answer streamed from upstream into the database and browsers.

A generation is an asyncio task owned by the server process, not by any websocket:
closing the tab leaves it running, Stop ends it. It listens on a channel-layer group of
its own (`generation.<message id>`), so Stop and "what do I have so far" requests reach
it from any process.

Relay: upstream deltas are appended to a pending buffer and sent to the conversation's
group by one sender loop, one layer message at a time. While a send is in flight, new
text piles up and leaves as one merged delta, so a busy layer (or Redis) gets fewer,
larger messages instead of a backlog. The process also sends at most about
RELAY_FRAMES_PER_SECOND frames in all: after each frame an answer waits its share
(`frame_pause`), so one answer sends every token at once while 50 fast ones merge
theirs 8 ms at a time, since every frame costs a system call per watching socket and a
browser paints only 60 times a second. Each sent
delta has the next `seq`; `parts[i]` is exactly the text of seq i+1, which is what lets a
reconnecting tab resume from any seq.

Checkpoints: one loop per process writes the text of every running generation that
changed about once per CHECKPOINT_INTERVAL, a slice of them at a time, and refreshes
the heartbeat of those that did not; a generation whose heartbeat goes stale, and stays
so once writes work, belonged to a process that died (see `_stale_interrupt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from chat.batches import DatabaseBatch
from chat.credentials import client_for
from chat.endings import answer_unsaved_event, messages_finish
from chat.events import (
    BroadcastFailed,
    Event,
    conversation_group,
    events_send,
    frame_send,
    generation_group,
    layer_message,
)
from chat.models import Message
from chat.requests import ImageUnreadable, RequestPlan, request_body
from chat.titles import title_improve_start
from chat.outages import DATABASE_UNAVAILABLE, database_outage, layer_outage
from chat.upstream import Finish, Retrying, TextDelta, ToolCallDelta, UpstreamError, Usage

logger = logging.getLogger(__name__)

FRAME_PAUSE_MAX = 0.05
# The checkpoint loop ticks this many times per CHECKPOINT_INTERVAL (see `_checkpoint`).
CHECKPOINT_SLICES = 10
# An ending the database refuses (a locked SQLite file, a PostgreSQL fail-over) is tried
# again after each of these pauses, in seconds; then the tabs are told it is not saved
# yet, and it is tried every FINISH_RETRY_EVERY seconds for up to FINISH_RETRY_FOR more.
# Meanwhile the answer stays among this process's running ones: checkpoints keep its
# text and heartbeat, and no sweep ends it with less text than the tabs were shown.
FINISH_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
FINISH_RETRY_EVERY = 2.0
FINISH_RETRY_FOR = 300.0
# Endings whose `done` frames could not be broadcast (the layer was down), oldest first,
# sent again once it works; at most this many (tabs that miss one still catch up from
# the database when they next subscribe).
UNDELIVERED_MAX = 1000
# How long a stopping process waits for its answers' endings to be stored.
SHUTDOWN_TIMEOUT = 5.0

# Every generation running in this process, by assistant message id. Holding the task
# here is what keeps it alive (asyncio keeps only weak references to tasks).
_running: dict[int, Generation] = {}
# Those of them whose answer has ended and only its storing is left: they keep no share
# of the frame budget.
_ending: set[int] = set()
_upkeep: asyncio.Task | None = None
_undelivered: list[Event] = []


# --- database writes ------------------------------------------------------------------


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


# Answers that end together are stored together (chat.batches).
_finish_write = DatabaseBatch(messages_finish)
_unsaved_event = database_sync_to_async(answer_unsaved_event)


# --- the generation --------------------------------------------------------------------


class Generation:
    def __init__(self, answer: Message, plan: RequestPlan):
        self.message_id = answer.pk
        self.plan = plan
        self.conversation_id: int | None = None
        self.parts: list[str] = []  # parts[i] is the text of delta seq i+1, as sent
        self.pending: list[str] = []  # received from upstream, not sent yet
        self.checkpointed_seq = 0
        self.base_seq = 0  # the seq of the stored text a continued answer starts from
        # Due at once: the first text is checkpointed at the next tick that has room for it.
        self.last_write = time.monotonic() - settings.CHECKPOINT_INTERVAL
        self.stop_requested = False
        self.unsaved: Event | None = None  # the `not_saved` done the tabs got, while it is retried
        self.task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self.resume_from(answer)

    def resume_from(self, answer: Message) -> None:
        """Start from the stored text (non-empty when continuing an ended answer)."""
        self.conversation_id = answer.conversation_id
        if answer.content:
            # Tabs hold the stored text as one block at `seq`: the new deltas number on from it.
            self.base_seq = max(answer.seq, 1)
            self.parts = [""] * (self.base_seq - 1) + [answer.content]
            self.checkpointed_seq = self.base_seq

    @property
    def seq(self) -> int:
        return len(self.parts)

    def text(self) -> str:
        return "".join(self.parts)

    async def run(self) -> None:
        started = time.monotonic()
        listener = asyncio.create_task(self._listen())
        sender = None
        fields: dict[str, Any] = {"status": Message.Status.COMPLETE}
        ttft_ms = None
        tool_calls: dict[int, dict[str, Any]] = {}
        try:
            sender = asyncio.create_task(self._send_loop())
            # Images are read and encoded in a worker thread: a burst of them must not
            # stall the event loop that relays every other answer.
            request = await asyncio.to_thread(request_body, self.plan) if self.plan.images else request_body(self.plan)
            async for event in client_for(self.plan.credential).stream(request):
                if isinstance(event, TextDelta):
                    if ttft_ms is None:
                        ttft_ms = int((time.monotonic() - started) * 1000)
                    self.pending.append(event.text)
                    self._wake.set()
                elif isinstance(event, ToolCallDelta):
                    _tool_call_merge(tool_calls, event)
                elif isinstance(event, Usage):
                    # A figure the API left out (or sent wrong) keeps an earlier chunk's.
                    fields.update({key: value for key, value in asdict(event).items() if value is not None})
                elif isinstance(event, Finish):
                    fields["finish_reason"] = event.reason
                elif isinstance(event, Retrying):
                    await self._announce_retry(event)
        except asyncio.CancelledError:
            fields["status"] = Message.Status.STOPPED if self.stop_requested else Message.Status.INTERRUPTED
            if not self.stop_requested:
                fields.update(error_code="interrupted", error_message="The server stopped while answering.")
        except ImageUnreadable as error:
            fields.update(status=Message.Status.ERROR, error_code="image_unreadable", error_message=error.message)
            logger.error("generation %s: %s", self.message_id, error)
        except UpstreamError as error:
            fields.update(status=Message.Status.ERROR, error_code=error.code, error_message=error.message)
            logger.info("generation %s failed: %s (%s)", self.message_id, error.code, error.detail or error)
        except Exception:
            logger.exception("generation %s crashed", self.message_id)
            fields.update(
                status=Message.Status.ERROR,
                error_code="internal",
                error_message="Something went wrong on the server while answering. The text so far is kept.",
            )
        finally:
            _ending.add(self.message_id)
            if sender is not None:
                self._closing = True
                self._wake.set()
                await asyncio.shield(sender)
            fields.update(
                content=self.text(),
                seq=self.seq,
                ttft_ms=ttft_ms,
                duration_ms=int((time.monotonic() - started) * 1000),
                tool_calls=[tool_calls[i] for i in sorted(tool_calls)],
            )
            try:
                await asyncio.shield(self._finish(fields))
            finally:
                # Until here it answers snapshot requests (a tab that reconnects while the
                # ending is retried learns how it stands).
                listener.cancel()
                _running.pop(self.message_id, None)
                _ending.discard(self.message_id)
                await _generation_group_leave(self)

    async def _finish(self, fields: dict[str, Any]) -> None:
        """Store the ending and tell the tabs. While the database cannot take it, keep
        trying (FINISH_RETRY_DELAYS, then every FINISH_RETRY_EVERY for FINISH_RETRY_FOR),
        the tabs told in between that it is not saved yet."""
        delays = iter(FINISH_RETRY_DELAYS)
        give_up_at = math.inf
        while True:
            try:
                events = await _finish_write((self.message_id, fields))
            except DatabaseError as error:
                passing = isinstance(error, DATABASE_UNAVAILABLE)
                if passing:
                    database_outage.failed(error)  # counted: one line per outage, not per try
                else:
                    logger.error("answer %s could not be ended: %s", self.message_id, error)
                delay = next(delays, None) if passing else None
                if delay is None:
                    if self.unsaved is None:
                        self.unsaved = await _unsaved_event(self.message_id, self.conversation_id, fields)
                        await _tabs_tell([self.unsaved])
                        give_up_at = time.monotonic() + FINISH_RETRY_FOR
                    if not passing or time.monotonic() >= give_up_at:
                        logger.error("answer %s could not be ended; the sweep will end it", self.message_id)
                        return
                    delay = FINISH_RETRY_EVERY
                await asyncio.sleep(delay)
            else:
                await _tabs_tell(events)
                if events and fields.get("status") == Message.Status.COMPLETE:
                    self._title_improve(fields.get("content", ""))
                return

    def _title_improve(self, answer: str) -> None:
        """After a conversation's first answer, ask for a better title (chat/titles.py)."""
        asked = [m for m in self.plan.body["messages"] if m["role"] == "user"]
        if len(asked) != 1 or not answer:
            return
        content = asked[0]["content"]
        question = content if isinstance(content, str) else " ".join(
            part.get("text", "") for part in content if part.get("type") == "text"
        )
        title_improve_start(
            conversation_id=self.conversation_id, model=self.plan.body["model"], question=question, answer=answer,
            credential=self.plan.credential,
        )

    async def _send_loop(self) -> None:
        """Send pending text as numbered deltas, one layer message in flight at a time."""
        group = conversation_group(self.conversation_id)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.pending:
                text = "".join(self.pending)
                self.pending.clear()
                self.parts.append(text)
                frame = {"type": "delta", "message_id": self.message_id, "seq": len(self.parts), "text": text}
                try:
                    await frame_send(group, frame)
                except BroadcastFailed:
                    pass  # counted; the text stays in `parts`: tabs that missed it resync from a snapshot
            if self._closing and not self.pending:
                return
            pause = frame_pause(len(_running) - len(_ending))
            if pause and not self._closing:
                # What arrives meanwhile rides in the next frame.
                await asyncio.sleep(pause)

    async def _announce_retry(self, event: Retrying) -> None:
        frame = {
            "type": "retrying",
            "message_id": self.message_id,
            "attempt": event.attempt,
            "delay": round(event.delay, 2),
            "reason": event.error.message,
        }
        with contextlib.suppress(BroadcastFailed):  # counted; the wait goes on regardless
            await frame_send(conversation_group(self.conversation_id), frame)

    async def _listen(self) -> None:
        """Answer stop and snapshot requests sent to this generation's group from any process."""
        layer = get_channel_layer()
        self.channel = await layer.new_channel()
        await layer.group_add(generation_group(self.message_id), self.channel)
        while True:
            request = await layer.receive(self.channel)
            try:
                await self._answer(layer, request)
            except Exception as error:  # a reply the layer could not take: the tab's deadline reads the database
                layer_outage.failed(error)

    async def _answer(self, layer, request: dict[str, Any]) -> None:
        if request.get("type") == "generation.stop":
            if self.message_id not in _ending:  # an answer that has ended has nothing left to stop
                self.stop_requested = True
                if self.task is not None:
                    self.task.cancel()
        elif request.get("type") == "generation.snapshot":
            frame = self.snapshot_frame(int(request.get("from_seq") or 0))
            await layer.send(request["reply_channel"], layer_message(frame))

    def snapshot_frame(self, from_seq: int) -> dict[str, Any]:
        """The text after `from_seq` as a `snapshot` frame; once ended but not saved, the
        `not_saved` done the other tabs were told."""
        if self.unsaved is not None:
            return self.unsaved[1]
        from_seq = min(max(from_seq, 0), self.seq)
        if from_seq < self.base_seq:
            from_seq = 0  # the stored text is one block: send it whole
        return {
            "type": "snapshot",
            "message_id": self.message_id,
            "from_seq": from_seq,
            "seq": self.seq,
            "text": "".join(self.parts[from_seq:]),
        }


async def _tabs_tell(events: list[Event]) -> None:
    """Send how answers ended. What the layer cannot take now is sent again once it works
    (`_undelivered_send`); the ending itself, stored already, does not wait for it."""
    try:
        await events_send(events)
    except BroadcastFailed:
        _undelivered.extend(events)
        del _undelivered[:-UNDELIVERED_MAX]


async def _undelivered_send() -> None:
    """Broadcast the endings the layer could not take, once it works again."""
    if not _undelivered or not layer_outage.worth_trying():
        return
    events = _undelivered[:]
    _undelivered.clear()
    await _tabs_tell(events)


def _tool_call_merge(calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
    call = calls.setdefault(delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.id:
        call["id"] = delta.id
    if delta.name:
        call["function"]["name"] += delta.name
    call["function"]["arguments"] += delta.arguments


async def _generation_group_leave(generation: Generation) -> None:
    channel = getattr(generation, "channel", None)
    if channel:
        try:
            await get_channel_layer().group_discard(generation_group(generation.message_id), channel)
        except Exception as error:  # the layer drops it when it works again (chat.redis_layer)
            layer_outage.failed(error)


# --- starting, stopping, asking -------------------------------------------------------


def frame_pause(running: int) -> float:
    """Seconds an answer waits after a frame when `running` answers share the process's
    frame budget; none under a millisecond (a timer would cost more than it saves), and
    never more than FRAME_PAUSE_MAX, so a crowded process still paints smoothly."""
    if not settings.RELAY_FRAMES_PER_SECOND:
        return 0.0
    pause = min(running / settings.RELAY_FRAMES_PER_SECOND, FRAME_PAUSE_MAX)
    return pause if pause >= 0.001 else 0.0


def generation_start(*, answer: Message, plan: RequestPlan) -> Generation:
    """Stream `answer` (stored streaming by `exchange_send`, `answer_retry` or `answer_continue`)."""
    generation = Generation(answer, plan)
    generation.task = asyncio.get_running_loop().create_task(generation.run(), name=f"generation-{answer.pk}")
    _running[answer.pk] = generation
    upkeep_ensure()
    return generation


async def generation_stop(*, message_id: int) -> None:
    """Ask the process running this generation to stop it (it keeps the partial text)."""
    await get_channel_layer().group_send(generation_group(message_id), {"type": "generation.stop"})


async def generations_interrupt(timeout: float = SHUTDOWN_TIMEOUT) -> int:
    """End this process's running answers before it stops: each ends `interrupted` with
    all the text it had, stored and told to its tabs, instead of being left streaming
    for another process's sweep to end with its last checkpoint half a minute later.
    Answers already ending are not cut short, only waited for. Returns how many were
    still not stored after `timeout` (left to the sweep)."""
    tasks = []
    for message_id, generation in _running.items():
        if generation.task is None:
            continue
        if message_id not in _ending:
            generation.task.cancel()
        tasks.append(generation.task)
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        logger.error("stopping: %s answers not stored in %s s, left to the sweep", len(pending), timeout)
    return len(pending)


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
    generation = _running.get(message_id)
    return generation.snapshot_frame(from_seq) if generation is not None else None


async def generation_ending_wait(*, message_id: int | None, timeout: float) -> bool:
    """Wait for an answer of this process whose ending is being stored (its tabs were
    told `not_saved`); True once stored. False at once for any other answer, and after
    `timeout` for one still not stored."""
    generation = _running.get(message_id)
    if generation is None or generation.task is None or message_id not in _ending:
        return False
    done, _ = await asyncio.wait([generation.task], timeout=timeout)
    return bool(done) and message_id not in _running


def upkeep_ensure() -> None:
    """Start this process's checkpoint-and-sweep loop if it is not running yet."""
    global _upkeep
    loop = asyncio.get_running_loop()
    if _upkeep is None or _upkeep.done() or _upkeep.get_loop() is not loop:
        _upkeep = loop.create_task(_upkeep_loop(), name="generation-upkeep")


async def _upkeep_loop() -> None:
    """Checkpoint running answers, a slice every CHECKPOINT_INTERVAL / CHECKPOINT_SLICES;
    sweep dead ones every STALE/2.

    Every process runs this once it has served a websocket, so that an answer left
    streaming by a process that died is ended by whichever process is still alive.
    """
    last_sweep = 0.0
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
            for g in _running.values()
            if g.conversation_id is not None
            and (
                (g.seq != g.checkpointed_seq and now - g.last_write >= settings.CHECKPOINT_INTERVAL)
                or now - g.last_write >= heartbeat_every
            )
        ),
        key=lambda g: g.last_write,
    )
    rows, heartbeat_only, before = [], [], []
    for generation in due[: math.ceil(len(_running) / CHECKPOINT_SLICES)]:
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
    events = await _stale_interrupt(exclude=list(_running))
    await _tabs_tell(events)
    return len(events)


# Answers a sweep of this process found stale: message id -> (the heartbeat it had then,
# when that was). See `_stale_interrupt`.
_suspects: dict[int, tuple[datetime, float]] = {}


def _suspect_settle() -> float:
    """Seconds a suspect's heartbeat must stay unmoved: the heartbeat interval, and
    long enough for a live owner's checkpoints to go round all its answers once."""
    return max(settings.GENERATION_STALE_AFTER / 4, 2 * settings.CHECKPOINT_INTERVAL)


def _suspects_due(last_sweep: float, now: float) -> bool:
    """Whether a suspect has become due to be ended since the last sweep (one that
    failed is left to the periodic sweep, not retried every tick)."""
    settle = _suspect_settle()
    # A copy, taken at once: the database thread may be sweeping meanwhile.
    return any(last_sweep < since + settle <= now for _, since in list(_suspects.values()))


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
    for pk, (heartbeat, _) in list(_suspects.items()):
        if stale.get(pk) != heartbeat:
            del _suspects[pk]  # its heartbeat moved, it ended, or it runs here now
    now = time.monotonic()
    new = [pk for pk in stale if pk not in _suspects]
    if new:
        Message.objects.filter(pk__in=new, status=Message.Status.STREAMING).update(heartbeat_at=F("heartbeat_at"))
        now = time.monotonic()  # writes work from here on, not from before a lock wait
        _suspects.update((pk, (stale[pk], now)) for pk in new)
    dead = [pk for pk, (_, since) in _suspects.items() if now - since >= _suspect_settle()]
    if not dead:
        return []  # nothing to end yet
    error = {
        "status": Message.Status.INTERRUPTED,
        "error_code": "interrupted",
        "error_message": "The server restarted while answering; the text up to that moment is kept.",
    }
    # Without `content` in the fields, the last checkpoint's text and seq are what stays.
    # Only with the heartbeat seen: one that its owner moved meanwhile is alive.
    ended = messages_finish([(pk, error) for pk in dead], heartbeats={pk: _suspects[pk][0] for pk in dead})
    for pk in dead:
        del _suspects[pk]
    return [event for events in ended if isinstance(events, list) for event in events]
