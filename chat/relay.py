"""Relaying one answer: a generation streams it from upstream into the browsers and, at its
end, the database.

A generation is an asyncio task owned by the server process, not by any websocket:
closing the tab leaves it running, Stop ends it. It listens on a channel-layer group of
its own (`generation.<message id>`; chat/generation_listener.py), so Stop and "what do I
have so far" requests reach it from any process (chat/generation.py is how the rest of
the app asks).

Upstream deltas are appended to a pending buffer and sent to the conversation's group by
one sender loop, one layer message at a time. While a send is in flight, new text piles
up and leaves as one merged delta, so a busy layer (or Redis) gets fewer, larger messages
instead of a backlog. The process also sends at most about RELAY_FRAMES_PER_SECOND frames
in all: after each frame an answer waits its share (`frame_pause`), so one answer sends
every token at once while 50 fast ones merge theirs 8 ms at a time, since every frame
costs a system call per watching socket and a browser paints only 60 times a second.
Each sent delta has the next `seq`; `parts[i]` is exactly the text of seq i+1, which is
what lets a reconnecting tab resume from any seq. The text is written to the database by
the upkeep (chat/upkeep.py), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import asdict
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from chat.credentials import client_for
from chat.endings import answer_unsaved_event, messages_finish_batched, usage_estimate
from chat.events import BroadcastFailed, Event, conversation_group, events_send, frame_send
from chat.generation_listener import GenerationListener
from chat.models import Message
from chat.outages import DATABASE_UNAVAILABLE, database_outage
from chat.pacing import pacing_wait, request_tokens
from chat.requests import ImageUnreadable, RequestPlan, request_body
from chat.running import running
from chat.sentences import error_fields, sentence
from chat.titles import title_improve_start
from chat.tool_calls import TOOL_ROUNDS_MAX, tool_call_merge, tool_call_run, tool_round_request, tools_end
from chat.tool_rounds import TOOL_NOT_RUN, TOOL_STOPPED, tool_round_store
from chat.upkeep import endings_tell
from chat.upstream_errors import UpstreamError
from chat.upstream_events import Finish, Retrying, TextDelta, ToolCallDelta, Usage

logger = logging.getLogger(__name__)

FRAME_PAUSE_MAX = 0.05
# An ending the database refuses (a locked SQLite file, a PostgreSQL fail-over) is tried
# again after each of these pauses, in seconds; then the tabs are told it is not saved
# yet, and it is tried every FINISH_RETRY_EVERY seconds for up to FINISH_RETRY_FOR more.
# Meanwhile the answer stays among this process's running ones: checkpoints keep its
# text and heartbeat, and no sweep ends it with less text than the tabs were shown.
FINISH_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
FINISH_RETRY_EVERY = 2.0
FINISH_RETRY_FOR = 300.0

_unsaved_event = database_sync_to_async(answer_unsaved_event)
_tool_round_store = database_sync_to_async(tool_round_store)


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
        self.queued: tuple[int, float] | None = None  # waiting its turn (chat/pacing.py): place, when it goes
        self.task: asyncio.Task | None = None
        self.rounds = 0  # tool rounds run so far
        self._wake = asyncio.Event()
        self._closing = False
        self.listener = GenerationListener(self)  # Stop and snapshot requests, from any process
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
        """Stream the answer; when it ends by asking for tools (and the conversation offers
        them), run the calls, store their results, and stream the next answer of the run
        from them, up to TOOL_ROUNDS_MAX rounds. Stop ends the run wherever it is."""
        listener = asyncio.create_task(self.listener.listen())
        try:
            # Images are read and encoded in a worker thread: a burst of them must not
            # stall the event loop that relays every other answer.
            stored = {"content": self.text(), "seq": self.seq}
            try:
                request = await asyncio.to_thread(request_body, self.plan) if self.plan.images else request_body(self.plan)
            except asyncio.CancelledError:
                await self._end({**self._cancelled(), **stored})
                return
            except ImageUnreadable as error:
                logger.error("generation %s: %s", self.message_id, error)
                await self._end({"status": Message.Status.ERROR, "error_code": "image_unreadable",
                                 **error_fields(ImageUnreadable.sentence), **stored})
                return
            while True:
                fields = await self._stream(request)
                calls = fields.get("tool_calls") or []
                if not (calls and fields["status"] == Message.Status.COMPLETE and "tools" in request):
                    await self._end(fields)
                    return
                try:
                    request = await self._tool_round(request, fields, calls)
                except Exception:
                    # The answer ends as an error (a no-op once it ended); messages of the
                    # round left streaming are ended by the sweep.
                    logger.exception("generation %s: its tool round failed", self.message_id)
                    await self._end({**fields, "status": Message.Status.ERROR, "error_code": "internal",
                                     **error_fields(sentence("tools_internal"))})
                    return
                if request is None:
                    return
        finally:
            # Until here it answers snapshot requests (a tab that reconnects while the
            # ending is retried learns how it stands).
            listener.cancel()
            running.generations.pop(self.message_id, None)
            running.ending.discard(self.message_id)
            await self.listener.leave()

    async def _stream(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request's answer streamed into `message_id`: the fields of its ending."""
        started = time.monotonic()
        sender = None
        fields: dict[str, Any] = {"status": Message.Status.COMPLETE}
        ttft_ms = None
        tool_calls: dict[int, dict[str, Any]] = {}
        # Whether the provider has the request, and where its text starts (after a continued
        # answer's stored text): what an ending without usage is estimated from.
        taken, received_from = False, self.seq
        try:
            sender = asyncio.create_task(self._send_loop())
            await pacing_wait(self.plan.credential, request_tokens(request), on_queued=self._announce_queued)
            self.queued = None
            taken = True
            client = client_for(self.plan.credential)
            async for event in client.stream(request) if settings.STREAM_ANSWERS else client.reply(request):
                if isinstance(event, TextDelta):
                    if ttft_ms is None:
                        ttft_ms = int((time.monotonic() - started) * 1000)
                    self.pending.append(event.text)
                    self._wake.set()
                elif isinstance(event, ToolCallDelta):
                    tool_call_merge(tool_calls, event)
                elif isinstance(event, Usage):
                    # A figure the API left out (or sent wrong) keeps an earlier chunk's.
                    fields.update({key: value for key, value in asdict(event).items() if value is not None})
                elif isinstance(event, Finish):
                    fields["finish_reason"] = event.reason
                elif isinstance(event, Retrying):
                    taken = False  # refused; what it sends next is not known until it answers
                    await self._announce_retry(event)
        except asyncio.CancelledError:
            fields.update(self._cancelled())
        except UpstreamError as error:
            fields.update(status=Message.Status.ERROR, error_code=error.code, **error_fields(error.sentence))
            logger.info("generation %s failed: %s (%s)", self.message_id, error.code, error.detail or error)
        except Exception:
            logger.exception("generation %s crashed", self.message_id)
            fields.update(
                status=Message.Status.ERROR,
                error_code="internal",
                **error_fields(sentence("internal")),
            )
        finally:
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
            fields.update(usage_estimate(fields, request=request if taken else None,
                                         text="".join(self.parts[received_from:])))
        return fields

    def _cancelled(self) -> dict[str, Any]:
        """How the run ends when its task is cancelled: by Stop, or by the process stopping."""
        if self.stop_requested:
            return {"status": Message.Status.STOPPED}
        return {"status": Message.Status.INTERRUPTED, "error_code": "interrupted",
                **error_fields(sentence("stopped_serving"))}

    async def _end(self, fields: dict[str, Any]) -> None:
        """The run's last ending: from here on Stop has nothing left to stop."""
        running.ending.add(self.message_id)
        await asyncio.shield(self._finish(fields))

    async def _tool_round(self, request: dict[str, Any], fields: dict[str, Any], calls: list[dict]) -> dict | None:
        """Store the calls and the answer that will follow them, end this answer, run the
        calls, and move on to the next answer: the request that asks it, or None when the
        run ended here (stopped, or its rounds used up)."""
        self.rounds += 1
        more = self.rounds <= TOOL_ROUNDS_MAX
        stored = await _tool_round_store(answer_id=self.message_id, calls=calls, answer_next=more)
        if stored.next_answer is not None:
            await self.listener.group_join(stored.next_answer.pk)  # Stop on the next answer stops the round
        with contextlib.suppress(BroadcastFailed):  # tabs that miss them catch up from the database
            await events_send(stored.events)
        results: dict[int, str] = {}
        try:
            if not more:
                # The model asked again after the last round it may have: its calls are
                # answered as not run, so the thread stays one every API accepts.
                await self._end(fields)
                await tools_end(stored.tool_messages, {}, TOOL_NOT_RUN, Message.Status.ERROR)
                return None
            await asyncio.shield(self._finish(fields))
            offered = [spec["function"]["name"] for spec in request["tools"]]
            await asyncio.gather(*(
                tool_call_run(message, call, offered, results) for message, call in zip(stored.tool_messages, calls)
            ))
        except asyncio.CancelledError:
            ending = self._cancelled()
            await asyncio.shield(tools_end(stored.tool_messages, results, TOOL_STOPPED, ending["status"]))
            if stored.next_answer is not None:
                self._become(stored.next_answer)
                await self._end({**ending, "content": "", "seq": 0})
            return None
        self._become(stored.next_answer)
        return tool_round_request(request, fields, calls, stored.tool_messages, results, self.rounds)

    def _become(self, answer: Message) -> None:
        """Go on as the run's next answer: its own text, sequence and checkpoints, and the
        group its tabs ask."""
        running.generations.pop(self.message_id, None)
        running.ending.discard(self.message_id)
        self.message_id = answer.pk
        self.parts, self.pending = [], []
        self.checkpointed_seq = self.base_seq = 0
        self.last_write = time.monotonic() - settings.CHECKPOINT_INTERVAL
        self.unsaved = None
        self.queued = None
        self._closing = False
        self._wake = asyncio.Event()
        running.generations[self.message_id] = self

    async def _finish(self, fields: dict[str, Any]) -> None:
        """Store the ending and tell the tabs. While the database cannot take it, keep
        trying (FINISH_RETRY_DELAYS, then every FINISH_RETRY_EVERY for FINISH_RETRY_FOR),
        the tabs told in between that it is not saved yet. (The answer is the one of the
        moment it was called: a run goes on to its next answer while this retries.)"""
        message_id = self.message_id
        delays = iter(FINISH_RETRY_DELAYS)
        give_up_at = math.inf
        while True:
            try:
                events = await messages_finish_batched((message_id, fields))
            except DatabaseError as error:
                passing = isinstance(error, DATABASE_UNAVAILABLE)
                if passing:
                    database_outage.failed(error)  # counted: one line per outage, not per try
                else:
                    logger.error("answer %s could not be ended: %s", message_id, error)
                delay = next(delays, None) if passing else None
                if delay is None:
                    if self.unsaved is None:
                        self.unsaved = await _unsaved_event(message_id, self.conversation_id, fields)
                        await endings_tell([self.unsaved])
                        give_up_at = time.monotonic() + FINISH_RETRY_FOR
                    if not passing or time.monotonic() >= give_up_at:
                        logger.error("answer %s could not be ended; the sweep will end it", message_id)
                        return
                    delay = FINISH_RETRY_EVERY
                await asyncio.sleep(delay)
            else:
                await endings_tell(events)
                if events:
                    self._title_improve(fields.get("status"), fields.get("content", ""))
                return

    def _title_improve(self, status: str | None, answer: str) -> None:
        """After a conversation's first answer, finished or stopped (even before its first
        word: the question alone names it), ask for a better title (chat/titles.py). Not
        after an error: the title would be asked of the key and model that just failed
        (refused, not found, overloaded, out of quota), and the retry that answers brings it.
        Not for a finished answer with no text either: one that only called tools, whose
        next answer in the run brings it. Nor for one stopped while it waited its turn
        (chat/pacing.py): the title's request would take the turn the next send waits for."""
        if status not in (Message.Status.COMPLETE, Message.Status.STOPPED) or self.queued is not None:
            return
        asked = [m for m in self.plan.body["messages"] if m["role"] == "user"]
        if len(asked) != 1 or not (answer or status == Message.Status.STOPPED):
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
            pause = frame_pause(len(running.generations) - len(running.ending))
            if pause and not self._closing:
                # What arrives meanwhile rides in the next frame.
                await asyncio.sleep(pause)

    async def _announce_retry(self, event: Retrying) -> None:
        frame = {
            "type": "retrying",
            "message_id": self.message_id,
            "attempt": event.attempt,
            "delay": round(event.delay, 2),
            "reason": event.error.retry_reason,  # said in each tab's language (chat/sentences.py)
        }
        with contextlib.suppress(BroadcastFailed):  # counted; the wait goes on regardless
            await frame_send(conversation_group(self.conversation_id), frame)

    async def _announce_queued(self, position: int, starts_in: float) -> None:
        """Its request waits for the key's tier (chat/pacing.py): where it stands in line."""
        self.queued = (position, time.monotonic() + starts_in)
        frame = {"type": "queued", "message_id": self.message_id, "position": position,
                 "starts_in": round(starts_in, 1)}
        with contextlib.suppress(BroadcastFailed):  # counted; a tab that missed it learns from a snapshot
            await frame_send(conversation_group(self.conversation_id), frame)

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
            **({"queued": self._queued_now()} if self.queued else {}),
        }

    def _queued_now(self) -> dict[str, Any]:
        position, starts_at = self.queued
        return {"position": position, "starts_in": round(max(starts_at - time.monotonic(), 0.0), 1)}


def frame_pause(answers: int) -> float:
    """Seconds an answer waits after a frame when `answers` share the process's
    frame budget; none under a millisecond (a timer would cost more than it saves), and
    never more than FRAME_PAUSE_MAX, so a crowded process still paints smoothly."""
    if not settings.RELAY_FRAMES_PER_SECOND:
        return 0.0
    pause = min(answers / settings.RELAY_FRAMES_PER_SECOND, FRAME_PAUSE_MAX)
    return pause if pause >= 0.001 else 0.0
