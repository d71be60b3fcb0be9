"""A browser tab without the browser: a websocket client that keeps a conversation the
way our page does (static/chat/frame_handlers.js, message_thread.js, message_view.js,
socket.js; docs/websocket.md, "How a tab stays in step with the server"), over real
websockets to real Daphne processes, so a test can check that what every tab shows ends
up equal to what the database holds, whatever was dropped on the way.

Answers are expected to come from the simulator's `[sim deltas=N]` directive, whose
tokens ("t0 ", "t1 ", …) are numbered: that is how text applied twice is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import psycopg
import websockets

from tests.live_server import Socket

# socket.js: a dropped socket is reopened after 0.5 s, 1 s, 2 s, … capped at 10 s, each
# delay drawn from its upper half. A server that stops (4012, our 1012 "service restart"
# in the range a server may send; 1001 going away) is left at once (within 0.25 s of
# jitter), for whichever process the load balancer picks; a second such close within
# 1 s backs off as usual.
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0
RESTART_CODES = {4012, 1012, 1001}
RESTART_JITTER, RESTART_AGAIN = 0.25, 1.0
# silence_watch.js: a tab holding an answer as streaming that heard nothing about it this
# long asks again (checked once a second; at most one subscribe per WATCHDOG).
WATCHDOG, WATCHDOG_TICK = 3.0, 1.0
# message_view.js: a gap asks for a snapshot at most this often (unless forced).
RESYNC_AGAIN = 2.0
HOLDING_MAX = 50
TOKEN = re.compile(r"\bt(\d+) ")


def ending_key(message: dict) -> tuple:
    """What an ended message shows: two endings with the same key render the same."""
    return tuple(message.get(k) for k in ("status", "content", "error_code", "error_message", "finish_reason",
                                          "model", "usage", "duration_ms"))


@dataclass
class Held:
    """One message as the tab shows it."""

    id: int
    role: str
    text: str = ""
    seq: int = 0  # the last delta seq applied (answers)
    status: str = "streaming"
    message: dict = field(default_factory=dict)  # the last message object applied
    ending: tuple | None = None  # ending_key of the ended state shown; None while streaming
    guessed: bool = False  # made up for a frame about an unknown answer
    ahead: dict[int, str] = field(default_factory=dict)  # deltas that came after a gap
    length_at: dict[int, int] = field(default_factory=dict)  # seq -> length of the text once it was applied
    heard_at: float = 0.0  # monotonic: the last frame about it
    changed_at: float = 0.0  # wall clock: the last change of what it shows
    resync_at: float = 0.0

    @property
    def final(self) -> dict | None:
        return None if self.ending is None else self.message

    def ended_as(self, message: dict) -> bool:
        return self.ending is not None and self.ending == ending_key(message)


class Tab:
    """One tab of a signed-in person. `bases` are the servers' base URLs: the tab cycles
    through them on each reconnect, as a load balancer would spread them."""

    def __init__(self, bases: str | list[str], session: str, *, name: str = "tab"):
        self.bases = [bases] if isinstance(bases, str) else list(bases)
        self.base_index = 0
        self.session = session
        self.name = name
        self.conversation_id: int | None = None
        self.messages: dict[int, Held] = {}
        self.pending: dict[str, dict] = {}  # client_id -> its send frame, until the server confirms it
        self.sent: dict[str, dict] = {}  # client_id -> its send frame as first sent
        self.refused: dict[str, dict] = {}  # client_id -> the error frame that refused it
        self.events: list[tuple[float, str, object]] = []  # (monotonic, "<" ">" or a note, frame or detail)
        self.close_codes: list[int | None] = []
        self.duplicated = 0  # text applied twice
        self.gaps = 0  # deltas that came after a gap, snapshots that could not be spliced in
        self.connection: websockets.ClientConnection | None = None
        self.connected = asyncio.Event()
        self._failures = 0
        self._subscribed_at = -WATCHDOG
        self._restart_reconnect_at = -RESTART_AGAIN
        self._pause_next: float | None = None  # set by drop()
        self._drop_when: tuple | None = None
        self._closing = False
        self._tasks: list[asyncio.Task] = []
        self._born = time.monotonic()

    # --- the page's life -------------------------------------------------------------

    async def open(self, conversation_id: int | None = None) -> Tab:
        """Load the page (the conversation's messages come in the HTML, as for a browser),
        then connect; returns once the socket is open."""
        if conversation_id is not None:
            self.conversation_id = conversation_id
            for message in await self._page_messages(conversation_id):
                self._message(message)
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._watchdog())]
        await asyncio.wait_for(self.connected.wait(), 15)
        return self

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def _page_messages(self, conversation_id: int) -> list[dict]:
        async with httpx.AsyncClient(base_url=self.bases[0], cookies={"sessionid": self.session}) as client:
            page = await client.get(f"/c/{conversation_id}/", timeout=10)
        page.raise_for_status()
        found = re.search(r'<script id="messages-data" type="application/json">(.*?)</script>', page.text, re.S)
        return json.loads(found.group(1))

    async def _run(self) -> None:
        while not self._closing:
            base = self.bases[self.base_index % len(self.bases)]
            try:
                connection = (await Socket.open(base, self.session)).connection
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as error:
                self._note("connect failed", f"{base}: {error!r}")
                await self._reconnect_pause(None)
                continue
            self.connection, self._failures = connection, 0
            self._note("open", base)
            self.connected.set()
            await self.subscribe()
            # A send whose confirmation was lost with the old socket goes again with the
            # same client_id: the server answers a stored one with its real state.
            for frame in list(self.pending.values()):
                await self._send_frame(frame)
            try:
                async for raw in connection:
                    if connection is not self.connection:
                        break  # dropped: what the server sent after that is lost
                    await self._apply(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            code = int(connection.close_code) if connection.close_code is not None else 1006
            self.close_codes.append(code)
            self._note("closed", code)
            if self.connection is connection:
                self.connection = None
                self.connected.clear()
            await self._reconnect_pause(code)

    async def _reconnect_pause(self, code: int | None) -> None:
        now = time.monotonic()
        if self._pause_next is not None:
            delay, self._pause_next = self._pause_next, None
        elif code in RESTART_CODES and now - self._restart_reconnect_at >= RESTART_AGAIN:
            delay, self._restart_reconnect_at = random.random() * RESTART_JITTER, now
        else:
            ceiling = min(RECONNECT_MAX, RECONNECT_FIRST * 2**self._failures)
            delay = ceiling / 2 + random.random() * ceiling / 2
            self._failures += 1
        self.base_index += 1
        await asyncio.sleep(delay)

    async def _watchdog(self) -> None:
        while not self._closing:
            await asyncio.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            quiet = [m.id for m in self.streaming() if now - m.heard_at >= WATCHDOG]
            if quiet and self.connection is not None and now - self._subscribed_at >= WATCHDOG:
                self._note("watchdog", quiet)
                await self.subscribe()

    def drop(self, reconnect_after: float) -> None:
        """The network goes away under the tab: the socket is cut (no close frame, the
        page is not told why) and the tab reconnects after `reconnect_after` seconds."""
        connection, self.connection = self.connection, None
        self.connected.clear()
        self._pause_next = reconnect_after
        self._note("drop", reconnect_after)
        if connection is not None:
            connection.transport.abort()

    async def drop_when(self, predicate, reconnect_after: float, timeout: float = 30) -> None:
        """drop() right after the frame that makes `predicate(self)` true, before any other."""
        self._drop_when = (predicate, reconnect_after)
        await self.until(lambda tab: tab._drop_when is None, timeout, f"drop condition for {self.name}")

    # --- browser → server ------------------------------------------------------------

    async def subscribe(self) -> None:
        if self.conversation_id is None:
            return
        frame = {
            "type": "subscribe",
            "conversation_id": self.conversation_id,
            "holding": [{"message_id": m.id, "last_seq": m.seq} for m in self.streaming()][-HOLDING_MAX:],
        }
        known = [m.id for m in self.messages.values() if not m.guessed]
        if known:
            frame["after_id"] = max(known)
        if await self._send_frame(frame):
            self._subscribed_at = time.monotonic()

    async def send(self, text: str, *, client_id: str | None = None, model: str = "yi-large") -> str:
        """Send a message to this tab's conversation (a new one if it has none); while the
        socket is down it waits to go out on the next open. Returns its client_id."""
        client_id = client_id or str(uuid.uuid4())
        frame = {"type": "send", "conversation_id": self.conversation_id, "text": text, "model": model,
                 "client_id": client_id}
        self.pending[client_id], self.sent[client_id] = frame, dict(frame)
        await self._send_frame(frame)
        return client_id

    async def _send_frame(self, frame: dict) -> bool:
        connection = self.connection
        if connection is None:
            return False
        try:
            await connection.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            return False
        self.events.append((time.monotonic(), ">", frame))
        return True

    # --- server → browser (frame_handlers.js, message_thread.js, message_view.js) ------

    async def _apply(self, frame: dict) -> None:
        now = time.monotonic()
        self.events.append((now, "<", frame))
        kind, message_id = frame.get("type"), frame.get("message_id")
        unknown = kind in ("snapshot", "delta", "retrying") and message_id not in self.messages
        if kind == "message":
            self._message(frame["message"])
        elif kind == "snapshot":
            await self._snapshot(self._view(message_id), frame)
        elif kind == "delta":
            await self._delta(self._view(message_id), frame)
        elif kind == "done":
            held = self.messages.get(message_id)
            if held is None:
                self._add_or_update(frame["message"])
            else:
                held.guessed, held.heard_at = False, now
                held.ahead.clear()
                held.seq = frame["seq"]
                if not held.ended_as(frame["message"]):
                    self._update(held, frame["message"])
        elif kind == "retrying":
            self._view(message_id).heard_at = now
        elif kind in ("conversation", "subscribed"):
            # The conversation a send from this tab made: the tab now shows it.
            conversation_id = frame["conversation"]["id"] if kind == "conversation" else frame["conversation_id"]
            mine = kind == "subscribed" or frame.get("client_id") in self.pending
            if mine and self.conversation_id is None and any(
                    f["conversation_id"] is None for f in self.pending.values()):
                self.conversation_id = conversation_id
                for pending in self.pending.values():
                    pending["conversation_id"] = pending["conversation_id"] or conversation_id
        elif kind == "error":
            if frame.get("client_id") in self.pending:
                self.refused[frame["client_id"]] = frame
                del self.pending[frame["client_id"]]
        if unknown:
            # Its `message` frame, and its question's, were lost (a broadcast while Redis
            # came back): ask, since nothing else would (nothing is missing by seq). The
            # page does not do this yet (docs/websocket.md leaves it open).
            await self._resync(self.messages[message_id])
        if self._drop_when is not None and self._drop_when[0](self):
            reconnect_after, self._drop_when = self._drop_when[1], None
            self.drop(reconnect_after)

    def _message(self, message: dict) -> None:
        if message.get("conversation_id") not in (None, self.conversation_id):
            return  # another conversation's
        if message["role"] == "user":
            # Message objects carry no client_id today: the stored text says which send it was.
            for client_id, frame in list(self.pending.items()):
                if client_id == message.get("client_id") or frame["text"].strip() == message["content"].strip():
                    del self.pending[client_id]
                    break
        self._add_or_update(message)

    def _add_or_update(self, message: dict) -> Held:
        held = self.messages.get(message["id"])
        if held is None:
            held = self.messages[message["id"]] = Held(message["id"], message["role"])
            self._update(held, message)
            return held
        held.guessed, held.heard_at = False, time.monotonic()
        # A repeated `message` of a streaming answer has no text the tab lacks, nor one of
        # an ending already shown; an ended one (or one reopened by continue) is the stored state.
        if not (held.status == "streaming" and message["status"] == "streaming") and not held.ended_as(message):
            self._update(held, message)
        return held

    def _view(self, message_id: int) -> Held:
        """A frame about an answer this tab never saw (its `message` went while the socket
        was down): hold it as streaming and let the seq logic catch up. Guessed, it does not
        count for after_id, so the subscribe still asks for the messages before it."""
        if message_id not in self.messages:
            self._add_or_update({"id": message_id, "conversation_id": self.conversation_id, "role": "assistant",
                                 "status": "streaming", "content": ""}).guessed = True
        return self.messages[message_id]

    def _update(self, held: Held, message: dict) -> None:
        """The whole message object from the server (the page, a `message`, a `done`)."""
        held.message, held.heard_at = message, time.monotonic()
        text = message.get("content") or ""
        if message["status"] == "streaming":
            held.ending = None
            held.seq = max(held.seq, message.get("seq") or 0)
            held.length_at = {held.seq: len(text)}
        else:
            held.ending = ending_key(message)
            held.seq = message.get("seq", held.seq)
            held.length_at = {}
        self._show(held, text, message["status"])

    async def _snapshot(self, held: Held, frame: dict) -> None:
        held.heard_at = time.monotonic()
        if held.status != "streaming":
            # Only a reopened answer (continue) has text past its ending; a snapshot taken
            # before the ending that arrives after it must not undo the final text.
            if frame["from_seq"] == 0 and frame["seq"] > held.seq:
                self._update(held, {**held.message, "status": "streaming", "content": frame["text"],
                                    "seq": frame["seq"], "error_code": "", "error_message": "", "finish_reason": ""})
            return
        if frame["seq"] < held.seq:
            return  # a checkpoint read from the database lags behind the deltas applied
        start = 0 if frame["from_seq"] == 0 else held.length_at.get(frame["from_seq"])
        if start is None:
            # It starts at a seq this tab never stood at: it cannot be spliced in.
            if frame["seq"] > held.seq:
                self.gaps += 1
                await self._resync(held, force=True)
            return
        self._append(held, held.text[:start], frame["text"])
        held.seq = frame["seq"]
        held.length_at[held.seq] = len(held.text)
        held.resync_at = 0.0
        self._ahead_apply(held)

    async def _delta(self, held: Held, frame: dict) -> None:
        held.heard_at = time.monotonic()
        if frame["seq"] <= held.seq:
            return  # already applied
        if held.status != "streaming":
            await self._resync(held)  # newer text for an ended answer: reopened while away
            return
        if frame["seq"] != held.seq + 1:
            held.ahead[frame["seq"]] = frame["text"]
            self.gaps += 1
            await self._resync(held)
            return
        self._append_seq(held, frame["seq"], frame["text"])
        self._ahead_apply(held)

    def _append_seq(self, held: Held, seq: int, text: str) -> None:
        self._append(held, held.text, text)
        held.seq = seq
        held.length_at[seq] = len(held.text)

    def _ahead_apply(self, held: Held) -> None:
        while held.seq + 1 in held.ahead:
            self._append_seq(held, held.seq + 1, held.ahead.pop(held.seq + 1))
        held.ahead = {seq: text for seq, text in held.ahead.items() if seq > held.seq}

    async def _resync(self, held: Held, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - held.resync_at >= RESYNC_AGAIN:
            held.resync_at = now
            await self.subscribe()

    def _append(self, held: Held, before: str, text: str) -> None:
        """Show `before` + `text`; a token of `text` that `before` already has is text
        applied twice."""
        tokens, earlier = TOKEN.findall(text), TOKEN.findall(before)
        if tokens and earlier and int(tokens[0]) <= int(earlier[-1]):
            self.duplicated += 1
            self._note("duplicated", f"message {held.id}: {text[:40]!r} after t{earlier[-1]}")
        self._show(held, before + text, held.status)

    def _show(self, held: Held, text: str, status: str) -> None:
        if (held.text, held.status) != (text, status):
            held.text, held.status, held.changed_at = text, status, time.time()

    def _note(self, kind: str, detail: object) -> None:
        self.events.append((time.monotonic(), kind, detail))

    # --- what the tests look at ------------------------------------------------------

    def streaming(self) -> list[Held]:
        return sorted((m for m in self.messages.values() if m.role == "assistant" and m.status == "streaming"),
                      key=lambda m: m.id)

    def answer(self) -> Held | None:
        """The newest answer this tab holds."""
        answers = [m for m in self.messages.values() if m.role == "assistant"]
        return max(answers, key=lambda m: m.id) if answers else None

    async def until(self, predicate, timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what or predicate} within {timeout} s\n{self.describe()}")
            await asyncio.sleep(0.01)

    def mismatches(self, rows: dict[int, dict]) -> list[str]:
        """How what this tab shows differs from the database's rows of its conversation."""
        problems = []
        for message_id, row in rows.items():
            held = self.messages.get(message_id)
            if held is None:
                problems.append(f"{self.name}: lacks message {message_id} ({row['role']}, {row['status']})")
            elif (held.status, held.text) != (row["status"], row["content"]):
                problems.append(f"{self.name}: shows message {message_id} as {held.status}, {short(held.text)} "
                                f"at seq {held.seq}; the database has {row['status']}, {short(row['content'])} "
                                f"at seq {row['seq']}")
        for message_id in self.messages.keys() - rows.keys():
            problems.append(f"{self.name}: shows message {message_id}, which the database does not have")
        return problems

    def shown_seq(self, message_id: int) -> int:
        """The highest delta seq of this answer the server sent this tab."""
        return max((f["seq"] for _, kind, f in self.events
                    if kind == "<" and f["type"] == "delta" and f["message_id"] == message_id), default=0)

    def describe(self, last: int = 12) -> str:
        """What it holds and its last events, deltas left out (they say little)."""
        held = ", ".join(f"{m.id}:{m.role[0]}:{m.status}:seq {m.seq}:{len(m.text)} chars"
                         for m in self.messages.values())
        events = [e for e in self.events if not (e[1] == "<" and e[2]["type"] == "delta")][-last:]
        recent = "\n".join(f"    {at - self._born:6.2f} s {kind} {str(detail)[:160]}" for at, kind, detail in events)
        return (f"  {self.name} (conversation {self.conversation_id}) holds [{held}]; pending {list(self.pending)}; "
                f"refused {[f['code'] for f in self.refused.values()]}; closes {self.close_codes}; "
                f"gaps {self.gaps}; duplicated {self.duplicated}; last events:\n{recent}")


def short(text: str) -> str:
    return f"{len(text)} chars ending {text[-24:]!r}"


# --- the database, read directly -----------------------------------------------------


def database_rows(database_url: str, where: str, params: tuple = ()) -> dict[int, dict]:
    """chat_message rows (SQLite or PostgreSQL) matching `where` (placeholders: %s), by id;
    `stored_at` is when the row was last written by a save or an ending (seconds since the epoch)."""
    query = ("SELECT id, conversation_id, role, status, content, seq, error_code, error_message, client_id, "
             f"updated_at FROM chat_message WHERE {where} ORDER BY id")
    if database_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=20)) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute(query.replace("%s", "?"), params)]
        for row in rows:  # SQLite keeps UTC as text
            row["updated_at"] = datetime.fromisoformat(row["updated_at"]).replace(tzinfo=timezone.utc)
    else:
        with psycopg.connect(database_url) as db:
            cursor = db.execute(query, params)
            names = [c.name for c in cursor.description]
            rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    for row in rows:
        row["stored_at"] = row.pop("updated_at").timestamp()
    return {row["id"]: row for row in rows}


def conversation_rows(database_url: str, conversation_id: int) -> dict[int, dict]:
    return database_rows(database_url, "conversation_id = %s", (conversation_id,))


async def converge(tabs: list[Tab], database_url: str, timeout: float) -> list[str]:
    """Wait until every tab shows exactly its conversation's rows, all ended; return what
    still differs after `timeout` seconds (nothing if they converged)."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        for tab in tabs:
            if tab.conversation_id is None:
                problems.append(f"{tab.name}: has no conversation")
                continue
            rows = await asyncio.to_thread(conversation_rows, database_url, tab.conversation_id)
            problems += [f"message {i} is still streaming in the database" for i, r in rows.items()
                         if r["status"] == "streaming"]
            problems += tab.mismatches(rows)
        if not problems or time.monotonic() > deadline:
            return list(dict.fromkeys(problems))  # a row streaming is said once, not per tab
        await asyncio.sleep(0.1)


def late(tabs: list[Tab], database_url: str, *, since: float = 0.0, within: float = 5.0) -> list[str]:
    """Answers a tab learned the stored end of later than `within` seconds after it was
    stored (or after `since`, when the tab could not have heard before: an outage's end)."""
    problems = []
    for tab in tabs:
        rows = conversation_rows(database_url, tab.conversation_id) if tab.conversation_id else {}
        for message_id, row in rows.items():
            held = tab.messages.get(message_id)
            if row["role"] != "assistant" or held is None or held.status == "streaming":
                continue
            took = held.changed_at - max(row["stored_at"], since)
            if took > within:
                problems.append(f"{tab.name}: learned how answer {message_id} ended {took:.1f} s after it was stored")
    return problems


def text_problems(tabs: list[Tab]) -> list[str]:
    return [f"{tab.name}: applied text twice {tab.duplicated} times" for tab in tabs if tab.duplicated]


# --- server logs ----------------------------------------------------------------------


def log_size(path) -> int:
    with open(path, "rb") as log:
        return log.seek(0, 2)


def log_lines(path, since: int = 0) -> list[str]:
    """The lines a server wrote to its log file from byte `since` on."""
    with open(path, "rb") as log:
        log.seek(since)
        return log.read().decode(errors="replace").splitlines()
