"""The fault matrix of issue 11: do tabs end up showing what the database holds, whatever fails?

    python bench/faults.py [--fault NAME ...] [--answers 20] [--list]

One set-up for the whole run: the simulator, PostgreSQL of our own (initdb + pg_ctl in a
temporary folder, on a free port: the machine's shared server is never stopped), a
redis-server of our own (tests/redis_server.py), and two Daphne processes of yiweb with
production settings (tests.live_server.production_env) sharing them. People sign up
through the real form once. Each fault then gets fresh answers: N people (default 20),
each with one tab on each process (tests/tabs.py, which behaves as the page does:
reconnects, re-subscribes with `holding` and `after_id`, resends unconfirmed sends, a
3 s watchdog); half the people send from their tab on process 1, half from process 2, so
each process generates half the answers. A couple of seconds into the answers, the fault:

  sigkill      process 1 is killed (SIGKILL) and started again on its port at once
  sigterm      process 1 is told to stop (SIGTERM), and started again once it has exited
  redis-5      our redis-server is killed, and started again on its port 5 s later
  redis-30     the same, 30 s
  postgres-5   our PostgreSQL is stopped (`pg_ctl stop -m immediate`: connections dropped,
               new ones refused) and started again on its port 5 s later
  postgres-30  the same, 30 s
  stall        the upstream goes silent after 100 deltas: for 8 s (then goes on) in half
               the answers, for good in the other half (yiweb's stall timeout ends them)
  529          the upstream answers 529: twice (then streams) in half the answers, four
               times (more than yiweb's retries) in the other half

Then it waits (bounded) until every answer has ended in the database and every tab
shows it, and reports per fault, each figure with its target:
- tabs converged: a tab's final text and status equal the database row (target: all);
- stored answers exact: the stored text is an exact prefix of the simulator's
  "t0 t1 ..." text, and a complete one is all of it;
- characters shown but never stored: the longest text a tab showed beyond the stored
  text (target 0; after a SIGKILL at most one checkpoint interval of text);
- log lines each yiweb process wrote from the sends to the end (its output goes to
  bench/results/faults-logs/; target: a handful, not one per tick or frame);
- time to converge: from the later of the fault's end and the answer's stored end to
  the last of its tabs converging.
Figures also go to bench/results/faults.json (merged by fault, as bench/load.py does).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import psycopg

from bench.common import API_KEY, MODEL, process_cpu, sessions_create
from tests.live_server import manage, production_env, running_app
from tests.redis_server import OwnRedis
from tests.simulator_server import free_port, running_simulator

RESULTS = REPO_ROOT / "bench" / "results" / "faults.json"
LOGS = REPO_ROOT / "bench" / "results" / "faults-logs"

INTERVAL_MS = 20  # a model's pace
# yiweb's production defaults (yiweb/settings.py), which this bench does not change.
CHECKPOINT_INTERVAL = 1.0
CHECKPOINT_TICK = CHECKPOINT_INTERVAL / 10
# What a SIGKILL may lose: the text of one checkpoint interval (and one tick of the loop).
LOSS_SPAN_ALLOWED = CHECKPOINT_INTERVAL + CHECKPOINT_TICK
UPSTREAM_STALL_TIMEOUT = 60.0
LEAD = 2.0  # seconds of answer before the fault
CONVERGE_TARGET_S = 5.0  # issue 11: a tab learns the real end within 5 s of the server knowing it
# Lines a process may write in one fault: one when something starts failing and one when it
# works again (database, channel layer), and one per answer of its that ended badly.
LOG_LINES_BASE = 4
SAMPLE_EVERY = 0.05  # how often each tab's text and status are looked at
DB_POLL_EVERY = 0.2  # how often the answers' rows are read
OPEN_AT_ONCE = 20
SIGNUP_THREADS = 4


# --- PostgreSQL of our own ------------------------------------------------------------


def postgres_bindir() -> Path:
    """Where initdb and pg_ctl are: pg_config's answer, else Debian's folder, else PATH."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found = Path(
            subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        )
        if (found / "initdb").exists():
            return found
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError("no initdb found: PostgreSQL's server binaries are needed for a server of our own")


class OwnPostgres:
    """A PostgreSQL cluster in a folder of its own, on a free port, that this bench may stop.

    PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user
    (runuser), who owns the folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self.bindir = postgres_bindir()
        self.running = False

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr or done.stdout}")

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=50 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        """As a crash would: every backend ends at once, clients see their connections
        dropped and new connections refused until start()."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="yiweb-faults-pg-"))
    server = OwnPostgres(folder)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


# --- the yiweb processes --------------------------------------------------------------


class Slot:
    """One yiweb process on a fixed port, which a fault may kill and start again there."""

    def __init__(self, index: int, env: dict[str, str], log_path: Path):
        self.index = index
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._stack: contextlib.ExitStack | None = None
        self.start_lines = 0  # lines a start-up writes
        self.starts = 0

    def start(self) -> None:
        before = log_size(self.log_path)
        stack = contextlib.ExitStack()
        deadline = time.monotonic() + 20
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                _, self.process = stack.enter_context(running_app(self.env, port=self.port, log_path=self.log_path))
                break
            except RuntimeError:  # the port still held by the process just killed: a moment more
                stack.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self._stack = stack
        self.starts += 1
        self.start_lines = max(self.start_lines, log_summary(log_read_since(self.log_path, before))["lines"])

    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.close()

    def terminate(self, timeout: float = 30) -> int | None:
        assert self.process is not None
        self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None  # reported: a stop is promised in a few seconds
        self.close()  # kills it if still running
        return code

    def cpu(self) -> float:
        return process_cpu(self.process.pid) if self.up() else math.nan


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def log_read_since(path: Path, offset: int) -> list[str]:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace").splitlines()
    except OSError:
        return []


TRACEBACK_PART = re.compile(r"^(\s|Traceback |During handling|The above exception|$)")
# Daphne's access log: a line per HTTP request and per websocket connecting, connected and
# gone. Counted apart: they follow the tabs' reconnects, not the server's own complaints.
ACCESS = re.compile(r'^\S+:\d+ - - \[[^\]]*\] "')
NUMBERS = re.compile(r"\d+(\.\d+)?")


def log_summary(lines: list[str]) -> dict:
    """The server's own lines (physical lines, tracebacks included) apart from Daphne's
    access lines, and the most frequent lines that start a record (numbers blanked, so
    'answer 41 could not...' and 'answer 42 could not...' count as one)."""
    access = [line for line in lines if ACCESS.match(line)]
    own = [line for line in lines if not ACCESS.match(line)]
    heads = [line for line in own if not TRACEBACK_PART.match(line)]
    common = Counter(NUMBERS.sub("N", line)[:160] for line in heads).most_common(6)
    return {
        "lines": len(own),
        "tracebacks": sum(line.startswith("Traceback ") for line in own),
        "access_lines": len(access),
        "common": [[line, count] for line, count in common],
    }


@dataclass
class Setup:
    slots: list[Slot]
    postgres: OwnPostgres
    redis: OwnRedis
    database_url: str
    sessions: list[str]


@contextlib.contextmanager
def setup_open(people: int) -> Iterator[Setup]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with (
        own_postgres() as postgres,
        tempfile.TemporaryDirectory() as redis_folder,
        running_simulator() as simulator_url,
    ):
        redis = OwnRedis(redis_folder)
        redis.start()
        try:
            with psycopg.connect(postgres.url(), autocommit=True) as admin:
                admin.execute('CREATE DATABASE "yiweb"')
            database_url = postgres.url("yiweb")
            with production_env(
                DATABASE_URL=database_url, REDIS_URL=redis.url, YI_API_BASE=simulator_url, YI_API_KEY=API_KEY
            ) as env:
                manage("migrate", "--noinput", env=env)
                slots = []
                for index in range(2):
                    log = LOGS / f"process-{index + 1}.log"
                    log.write_bytes(b"")
                    slots.append(Slot(index, env, log))
                try:
                    for slot in slots:
                        slot.start()
                    started = time.monotonic()
                    sessions = sessions_create([s.base for s in slots], people, "fault", SIGNUP_THREADS)
                    print(f"set-up: {people} people signed up in {time.monotonic() - started:.0f} s", file=sys.stderr)
                    yield Setup(slots, postgres, redis, database_url, sessions)
                finally:
                    for slot in slots:
                        slot.close()
        finally:
            redis.stop()


# --- the faults -----------------------------------------------------------------------


@dataclass
class Window:
    """When a fault began and ended (monotonic), and anything it noticed."""

    start: float
    end: float
    notes: list[str] = field(default_factory=list)


async def process_kill(setup: Setup) -> Window:
    slot = setup.slots[0]
    start = time.monotonic()
    slot.kill()
    await asyncio.to_thread(slot.start)  # as a supervisor would
    return Window(
        start,
        time.monotonic(),
        [f"process 1 killed, serving again after {time.monotonic() - start:.1f} s ({slot.attempts} start attempts)"],
    )


async def process_terminate(setup: Setup) -> Window:
    slot = setup.slots[0]
    start = time.monotonic()
    code = await asyncio.to_thread(slot.terminate)
    exited = time.monotonic() - start
    await asyncio.to_thread(slot.start)
    notes = [
        (
            f"process 1 exited {exited:.1f} s after SIGTERM with code {code}, serving again after "
            f"{time.monotonic() - start:.1f} s ({slot.attempts} start attempts)"
        )
    ]
    return Window(start, time.monotonic(), notes)


def redis_outage(seconds: float) -> Callable[[Setup], Awaitable[Window]]:
    async def inject(setup: Setup) -> Window:
        start = time.monotonic()
        setup.redis.stop()
        await asyncio.sleep(seconds)
        await asyncio.to_thread(setup.redis.start)
        return Window(start, time.monotonic())

    return inject


def postgres_outage(seconds: float) -> Callable[[Setup], Awaitable[Window]]:
    async def inject(setup: Setup) -> Window:
        start = time.monotonic()
        await asyncio.to_thread(setup.postgres.stop)
        stopped = time.monotonic()
        await asyncio.sleep(max(0.0, seconds - (stopped - start)))
        await asyncio.to_thread(setup.postgres.start)
        return Window(start, time.monotonic())

    return inject


async def upstream_fault(setup: Setup) -> Window:
    """Nothing to do: the fault is in the answers' directives. It spans the whole answer."""
    now = time.monotonic()
    return Window(now, now)


@dataclass
class Fault:
    name: str
    description: str
    inject: Callable[[Setup], Awaitable[Window]]
    seconds: tuple[float, float]  # answer lengths, spread over the answers
    directive: Callable[[int], str] = lambda i: ""
    expected_end: Callable[[int, float], float] | None = None  # seconds after the sends, per answer
    settle: float = 25.0  # how long past the expected ends to wait for the tabs
    may_lose: bool = False  # text shown may be lost (up to one checkpoint interval)
    fault_seconds: float = 0.0  # how long the fault lasts, for the deadline
    inject_at_sends: bool = False  # upstream faults: the fault is the answer itself


FAULTS = [
    Fault("sigkill", "SIGKILL of process 1, started again at once", process_kill, (8, 14), settle=50, may_lose=True),
    Fault("sigterm", "SIGTERM of process 1, started again once exited", process_terminate, (8, 14), fault_seconds=6),
    Fault("redis-5", "our redis-server killed, back 5 s later", redis_outage(5), (3, 14), fault_seconds=5),
    Fault("redis-30", "our redis-server killed, back 30 s later", redis_outage(30), (4, 40), fault_seconds=30),
    Fault(
        "postgres-5", "our PostgreSQL stopped (immediate), back 5 s later", postgres_outage(5), (3, 14), fault_seconds=5
    ),
    Fault(
        "postgres-30",
        "our PostgreSQL stopped (immediate), back 30 s later",
        postgres_outage(30),
        (4, 40),
        fault_seconds=30,
    ),
    Fault(
        "stall",
        f"upstream silent after 100 deltas: 8 s in even answers, for good in odd ones ({UPSTREAM_STALL_TIMEOUT:g} s timeout)",
        upstream_fault,
        (6, 6),
        directive=lambda i: "stall=100 stall_for=8" if i % 2 == 0 else "stall=100 stall_for=3600",
        expected_end=lambda i, seconds: (
            seconds + 8 if i % 2 == 0 else 100 * INTERVAL_MS / 1000 + UPSTREAM_STALL_TIMEOUT
        ),
        inject_at_sends=True,
    ),
    Fault(
        "529",
        "upstream 529: twice (then streams) in even answers, 4 times (past yiweb's 3 retries) in odd ones",
        upstream_fault,
        (6, 6),
        directive=lambda i: "status=529 times=2" if i % 2 == 0 else "status=529 times=4",
        expected_end=lambda i, seconds: seconds + 8,
        inject_at_sends=True,
    ),
]


def expected_text(deltas: int) -> str:
    return "".join(f"t{i} " for i in range(deltas))


# --- one fault's answers and tabs ---------------------------------------------------------


@dataclass
class Answer:
    index: int
    slot: int  # the process its send went to, which generates it
    deltas: int
    text: str  # what was sent
    client_id: str = ""
    message_id: int | None = None
    conversation_id: int | None = None
    expected_end: float = 0.0  # seconds after the sends
    row: tuple[str, int, int] | None = None  # (status, seq, length) last read
    row_changed_at: float = math.nan
    final: dict | None = None  # the row at the end


class Rows:
    """Reads the answers' rows every DB_POLL_EVERY s, noting when each last changed. A
    database that is down is simply not read until it is back."""

    def __init__(self, url: str, answers: list[Answer]):
        self.url = url
        self.answers = answers
        self.connection: psycopg.AsyncConnection | None = None
        self.failures = 0

    async def _connect(self) -> psycopg.AsyncConnection:
        if self.connection is None or self.connection.closed:
            self.connection = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=2)
        return self.connection

    async def _fetch(self, query: str, *params) -> list[tuple]:
        try:
            async with asyncio.timeout(3):
                connection = await self._connect()
                return await (await connection.execute(query, params)).fetchall()
        except (psycopg.Error, OSError, TimeoutError):
            self.failures += 1
            if self.connection is not None:
                with contextlib.suppress(Exception):
                    await self.connection.close()
            self.connection = None
            return []

    async def find(self, deadline: float) -> None:
        """The answer and conversation of each send, by its client_id."""
        by_client = {a.client_id: a for a in self.answers}
        while time.monotonic() < deadline and any(a.message_id is None for a in self.answers):
            rows = await self._fetch(
                "SELECT q.client_id, a.id, a.conversation_id FROM chat_message q "
                "JOIN chat_message a ON a.parent_id = q.id AND a.role = 'assistant' WHERE q.client_id = ANY(%s)",
                [a.client_id for a in self.answers if a.message_id is None],
            )
            for client_id, message_id, conversation_id in rows:
                by_client[client_id].message_id, by_client[client_id].conversation_id = message_id, conversation_id
            await asyncio.sleep(0.1)

    async def poll(self) -> None:
        ids = {a.message_id: a for a in self.answers if a.message_id is not None}
        while True:
            rows = await self._fetch(
                "SELECT id, status, seq, length(content) FROM chat_message WHERE id = ANY(%s)", list(ids)
            )
            now = time.monotonic()
            for message_id, status, seq, length in rows:
                answer = ids[message_id]
                if answer.row != (status, seq, length):
                    answer.row, answer.row_changed_at = (status, seq, length), now
            await asyncio.sleep(DB_POLL_EVERY)

    def ended(self) -> bool:
        return all(a.row is not None and a.row[0] != "streaming" for a in self.answers if a.message_id is not None)

    async def finals(self, deadline: float) -> None:
        ids = {a.message_id: a for a in self.answers if a.message_id is not None}
        while time.monotonic() < deadline:
            rows = await self._fetch(
                "SELECT id, status, seq, content, error_code FROM chat_message WHERE id = ANY(%s)", list(ids)
            )
            if rows:
                for message_id, status, seq, content, error_code in rows:
                    ids[message_id].final = {"status": status, "seq": seq, "content": content, "error_code": error_code}
                return
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()


def observed_tab_class():
    """tests/tabs.py's Tab, also keeping the longest text each answer ever showed (what a
    person may have read), which a later `done` with less text replaces."""
    from tests.tabs import Tab

    class Observed(Tab):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.longest: dict[int, str] = {}
            self.growth: dict[int, list[tuple[float, int]]] = {}  # (monotonic, length) each time it grew

        def _show(self, held, text, status):  # every change of what the tab shows goes here
            super()._show(held, text, status)
            self.seen(held.id, text)

        def seen(self, message_id: int, text: str) -> None:
            if len(text) > len(self.longest.get(message_id, "")):
                self.longest[message_id] = text
                self.growth.setdefault(message_id, []).append((time.monotonic(), len(text)))

    return Observed


def common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # the longest equal prefix, by halving
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def loss_allowed(stored: str, deltas: int) -> int:
    """The characters of the tokens that follow the stored text for one checkpoint interval
    (and one tick of the checkpoint loop) at INTERVAL_MS per token: what the figure in
    characters is read against. Pass or miss is decided on `lost_span`, which does not
    depend on the simulator keeping its pace."""
    tokens = len(stored.split())
    window = math.ceil(LOSS_SPAN_ALLOWED * 1000 / INTERVAL_MS)
    return sum(len(f"t{i} ") for i in range(tokens, min(deltas, tokens + window)))


def lost_span(tab, message_id: int, stored: int) -> float:
    """Seconds between the tab showing the first character past the stored text and its
    text last growing: how much of the stream it read that was never stored. A checkpoint
    at most CHECKPOINT_INTERVAL before a SIGKILL keeps this under the interval."""
    growth = tab.growth.get(message_id, [])
    past = [at for at, length in growth if length > stored]
    return past[-1] - past[0] if past else 0.0


async def tabs_open(tab_class, setup: Setup, people: int) -> list[list]:
    """For person i, one tab on each process (tab j first connects to process j, and a
    reconnect goes to the other, as a load balancer would spread it)."""
    bases = [slot.base for slot in setup.slots]
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    tabs = [
        [
            tab_class([bases[j], bases[1 - j]], setup.sessions[i], name=f"answer {i} tab on process {j + 1}")
            for j in range(2)
        ]
        for i in range(people)
    ]

    async def open_one(tab) -> None:
        async with gate:
            await tab.open()

    await asyncio.gather(*(open_one(tab) for pair in tabs for tab in pair))
    return tabs


async def fault_run(setup: Setup, fault: Fault, people: int) -> dict:
    tab_class = observed_tab_class()
    for slot in setup.slots:
        if not slot.up():  # a process that died in an earlier fault and was not started again
            await asyncio.to_thread(slot.start)
    tabs = await tabs_open(tab_class, setup, people)
    answers = []
    low, high = fault.seconds
    for i in range(people):
        seconds = low + (high - low) * i / max(1, people - 1)
        deltas = round(seconds * 1000 / INTERVAL_MS)
        extra = fault.directive(i)
        text = (
            f"fault {fault.name}, answer {i} [sim deltas={deltas} interval={INTERVAL_MS}{' ' + extra if extra else ''}]"
        )
        expected_end = fault.expected_end(i, seconds) if fault.expected_end else seconds
        answers.append(Answer(i, i % 2, deltas, text, expected_end=expected_end))
    rows = Rows(setup.database_url, answers)
    sampler = poller = None
    try:
        log_from = [log_size(slot.log_path) for slot in setup.slots]
        cpu_from = [slot.cpu() for slot in setup.slots]
        sends_at, sends_wall = time.monotonic(), time.time()
        for answer in answers:  # half the answers on each process
            answer.client_id = await tabs[answer.index][answer.slot].send(answer.text, model=MODEL)
        await rows.find(time.monotonic() + 20)
        missing = [a.index for a in answers if a.message_id is None]
        for answer in answers:  # the other tab opens the conversation, as a click in its sidebar would
            if answer.message_id is not None:
                watcher = tabs[answer.index][1 - answer.slot]
                watcher.conversation_id = answer.conversation_id
                await watcher.subscribe()
        poller = asyncio.create_task(rows.poll())
        sampler = asyncio.create_task(tabs_sample(tabs, answers))
        held_by_all = await until(
            lambda: all(a.message_id in tab.messages for a in answers if a.message_id for tab in tabs[a.index]),
            time.monotonic() + 15,
        )
        if fault.inject_at_sends:
            window = await fault.inject(setup)
            window.start = window.end = sends_at
        else:
            await asyncio.sleep(max(0.0, sends_at + LEAD - time.monotonic()))
            window = await fault.inject(setup)
        fault_end = window.end
        if fault.name == "stall":
            fault_end = sends_at + 100 * INTERVAL_MS / 1000 + 8  # the resumed stalls' end; the others end when stored
        deadline = max(fault_end, sends_at + max(a.expected_end for a in answers)) + fault.settle
        await until(lambda: rows.ended() and tabs_match_rows(tabs, answers), deadline)
        measured_until = time.monotonic()
        await rows.finals(time.monotonic() + 30)
        cpu_to = [slot.cpu() for slot in setup.slots]
        logs = [log_summary(log_read_since(slot.log_path, offset)) for slot, offset in zip(setup.slots, log_from)]
    finally:
        for task in (sampler, poller):
            if task is not None:
                task.cancel()
        await rows.close()
        await asyncio.gather(*(tab.close() for pair in tabs for tab in pair), return_exceptions=True)
    # Times as wall-clock seconds from the sends (tests/tabs.py notes changes in wall time).
    return figures(
        fault,
        setup,
        answers,
        tabs,
        window,
        sends_wall + (fault_end - sends_at),
        sends_wall,
        logs,
        cpu_from,
        cpu_to,
        extra={
            "missing_answers": missing,
            "held_by_all_tabs_before_fault": held_by_all,
            "measured_s": measured_until - sends_at,
            "db_poll_failures": rows.failures,
            "window_s": [window.start - sends_at, window.end - sends_at],
            "notes": window.notes,
        },
    )


async def until(predicate, deadline: float, every: float = 0.1) -> bool:
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)
    return True


async def tabs_sample(tabs, answers: list[Answer]) -> None:
    """Keep the longest text shown even if tests/tabs.py's Tab changes where it shows text,
    and note when each answer's row last changed (rows.poll does that) — see `seen`."""
    while True:
        for answer in answers:
            for tab in tabs[answer.index]:
                held = tab.messages.get(answer.message_id)
                if held is not None:
                    tab.seen(answer.message_id, held.text)
        await asyncio.sleep(SAMPLE_EVERY)


def tabs_match_rows(tabs, answers: list[Answer]) -> bool:
    for answer in answers:
        if answer.message_id is None or answer.row is None:
            continue
        status, _, length = answer.row
        for tab in tabs[answer.index]:
            held = tab.messages.get(answer.message_id)
            if held is None or held.status != status or len(held.text) != length:
                return False
    return True


# --- the figures ------------------------------------------------------------------------


def figures(
    fault: Fault,
    setup: Setup,
    answers: list[Answer],
    tabs,
    window: Window,
    fault_end_wall: float,
    sends_wall: float,
    logs: list[dict],
    cpu_from: list[float],
    cpu_to: list[float],
    extra: dict,
) -> dict:
    """Everything is in seconds from the sends."""
    fault_end = fault_end_wall - sends_wall
    monotonic_to_wall = time.time() - time.monotonic()
    per_answer, unconverged, converge_times = [], [], []
    converged = exact = ended = lost_total = lost_max = lost_over = 0
    lost_span_max = 0.0
    statuses, error_codes = Counter(), Counter()
    for answer in answers:
        pair = tabs[answer.index]
        final = answer.final
        if answer.message_id is None or final is None:
            per_answer.append({"index": answer.index, "missing": True})
            unconverged += [tab.describe() for tab in pair]
            continue
        content, status = final["content"], final["status"]
        statuses[status] += 1
        if final["error_code"]:
            error_codes[final["error_code"]] += 1
        expected = expected_text(answer.deltas)
        is_exact = expected.startswith(content) and (status != "complete" or content == expected)
        exact += is_exact
        ended += status != "streaming"
        stored_end = (answer.row_changed_at + monotonic_to_wall - sends_wall) if status != "streaming" else math.nan
        shown = [tab.messages.get(answer.message_id) for tab in pair]
        tabs_converged = [h is not None and (h.text, h.status) == (content, status) for h in shown]
        converged += sum(tabs_converged)
        converge = math.nan
        converge_raw = math.nan
        if all(tabs_converged) and status != "streaming":
            last = max(h.changed_at - sends_wall for h in shown)
            # The rows are read every DB_POLL_EVERY s: a tab told at once may look a little early.
            converge_raw = last - max(fault_end, stored_end)
            converge = max(0.0, converge_raw)
            converge_times.append(converge)
        unconverged += [tab.describe() for tab, ok in zip(pair, tabs_converged) if not ok]
        longest = max((tab.longest.get(answer.message_id, "") for tab in pair), key=len)
        kept = common_prefix(longest, content)
        lost = len(longest) - kept
        span = max(lost_span(tab, answer.message_id, kept) for tab in pair) if lost else 0.0
        may_lose = fault.may_lose and answer.slot == 0  # the killed process's answers
        allowed = loss_allowed(content, answer.deltas) if may_lose else 0
        lost_total += lost
        lost_max = max(lost_max, lost)
        lost_span_max = max(lost_span_max, span)
        lost_over += lost > 0 and (not may_lose or span > LOSS_SPAN_ALLOWED)
        per_answer.append(
            {
                "index": answer.index,
                "message_id": answer.message_id,
                "process": answer.slot + 1,
                "deltas": answer.deltas,
                "status": status,
                "error_code": final["error_code"],
                "stored_chars": len(content),
                "expected_chars": len(expected),
                "exact": is_exact,
                "stored_end_s": stored_end,
                "tabs_converged": tabs_converged,
                "tabs_shown": [None if h is None else [h.status, len(h.text), h.seq] for h in shown],
                "shown_not_stored": lost,
                "shown_not_stored_allowed": allowed,
                "shown_not_stored_span_s": span,
                "shown_not_expected": [not expected.startswith(tab.longest.get(answer.message_id, "")) for tab in pair],
                "converge_s": converge,
                "converge_raw_s": converge_raw,
            }
        )
    restarted = fault.inject in (process_kill, process_terminate)
    for index, log in enumerate(logs):
        slot = setup.slots[index]
        bad = sum(1 for a in per_answer if a.get("process") == index + 1 and a.get("status") != "complete")
        log["process"] = index + 1
        log["target"] = LOG_LINES_BASE + bad + (slot.start_lines if restarted and index == 0 else 0)
        log["cpu_s"] = cpu_to[index] - cpu_from[index] if not restarted or index else math.nan
    all_tabs = [tab for pair in tabs for tab in pair]
    events = Counter(kind for tab in all_tabs for _, kind, _ in tab.events if kind not in ("<", ">"))
    sent = Counter(detail.get("type") for tab in all_tabs for _, kind, detail in tab.events if kind == ">")
    total_tabs = 2 * len(answers)
    result = {
        "fault": fault.name,
        "description": fault.description,
        "answers": len(answers),
        "tabs": total_tabs,
        "tabs_converged": converged,
        "stored_exact": exact,
        "answers_ended": ended,
        "statuses": dict(statuses),
        "error_codes": dict(error_codes),
        "shown_not_stored": {
            "total": lost_total,
            "max": lost_max,
            "span_max_s": lost_span_max,
            "answers_over_allowed": lost_over,
            "allowed": f"{LOSS_SPAN_ALLOWED:g} s of stream in process 1's answers" if fault.may_lose else 0,
        },
        "log": logs,
        "converge_s": {
            "max": max(converge_times, default=math.nan),
            "p50": sorted(converge_times)[len(converge_times) // 2] if converge_times else math.nan,
            "answers_measured": len(converge_times),
            "target": CONVERGE_TARGET_S,
        },
        "fault_end_s": fault_end,
        "tab_events": dict(events),
        "tab_frames_sent": dict(sent),
        "tab_close_codes": dict(Counter(str(c) for tab in all_tabs for c in tab.close_codes)),
        "tab_gaps": sum(tab.gaps for tab in all_tabs),
        "tab_duplicated": sum(tab.duplicated for tab in all_tabs),
        "tab_refused": dict(Counter(f["code"] for tab in all_tabs for f in tab.refused.values())),
        "tab_pending_at_end": sum(len(tab.pending) for tab in all_tabs),
        "unconverged": unconverged[:6],
        "per_answer": per_answer,
        **extra,
    }
    result["pass"] = {
        "converged": converged == total_tabs,
        "exact": exact == len(answers),
        "shown_not_stored": lost_over == 0,
        "log_lines": all(log["lines"] <= log["target"] for log in logs),
        "converge": len(converge_times) == len(answers) and max(converge_times, default=0) <= CONVERGE_TARGET_S,
    }
    return result


# --- the report -------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def seconds(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} s"


def report_line(r: dict) -> list[str]:
    passed = r["pass"]
    lost = r["shown_not_stored"]
    allowed = f"{lost['span_max_s']:.2f} s of ≤ {LOSS_SPAN_ALLOWED:g} s" if lost["allowed"] else "0"
    logs = " / ".join(f"{log['lines']}" for log in r["log"])
    access = " / ".join(f"{log['access_lines']}" for log in r["log"])
    log_targets = " / ".join(f"≤ {log['target']}" for log in r["log"])
    converge = r["converge_s"]
    ratio = f"{converge['max'] / converge['target']:.2f}×" if not math.isnan(converge["max"]) else "-"
    missing = r["answers"] - converge["answers_measured"]
    cells = [
        f"{r['tabs_converged']}/{r['tabs']} {r['tabs_converged'] / r['tabs']:.0%} {mark(passed['converged'])}",
        f"{r['stored_exact']}/{r['answers']} {mark(passed['exact'])}",
        (
            f"{lost['total']} (max {lost['max']}; {allowed}; over: {lost['answers_over_allowed']}) "
            f"{mark(passed['shown_not_stored'])}"
        ),
        f"{logs} ({log_targets}) {mark(passed['log_lines'])}",
        (
            f"{seconds(converge['max'])}, p50 {seconds(converge['p50'])} (≤ {converge['target']:g} s, {ratio}"
            f"{f'; {missing} answers not measured' if missing else ''}) {mark(passed['converge'])}"
        ),
    ]
    widths = [20, 14, 50, 28, 0]
    lines = [
        f"{r['fault']:<12}" + "".join(cell.ljust(width - 1) + " " for cell, width in zip(cells, widths)).rstrip(),
        f"{'':<12}{r['description']}; ended {r['answers_ended']}/{r['answers']}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        + (
            f" (errors: {', '.join(f'{k} {v}' for k, v in sorted(r['error_codes'].items()))})"
            if r["error_codes"]
            else ""
        )
        + f"; fault {r['window_s'][0]:.1f}–{r['window_s'][1]:.1f} s after the sends, measured until {r['measured_s']:.1f} s",
        f"{'':<12}tabs: "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["tab_events"].items()))
        + f"; frames sent {', '.join(f'{k} {v}' for k, v in sorted(r['tab_frames_sent'].items()))}"
        + f"; closes {r['tab_close_codes'] or '-'}; gaps {r['tab_gaps']}, duplicated {r['tab_duplicated']}"
        + (f", refused {r['tab_refused']}" if r["tab_refused"] else "")
        + (f", sends unconfirmed {r['tab_pending_at_end']}" if r["tab_pending_at_end"] else ""),
    ]
    lines += [f"{'':<12}{note}" for note in r["notes"]]
    for log in r["log"]:
        if log["lines"]:
            common = "; ".join(f"{count}× {line[:110]}" for line, count in log["common"][:3])
            lines.append(
                f"{'':<12}process {log['process']} log: {log['lines']} lines, {log['tracebacks']} tracebacks: {common}"
            )
    lines.append(f"{'':<12}access log lines (not counted above) p1 / p2: {access}")
    return lines


def report(results: list[dict], machine: dict, args) -> str:
    lines = [
        (
            f"faults: {args.answers} answers × 2 tabs (one on each of 2 Daphne processes, production settings), "
            f"PostgreSQL and Redis of our own, {INTERVAL_MS} ms per token"
        ),
        (
            f"commit {machine['commit']}; machine: {machine['nproc']} cores, Python {machine['python']}, "
            f"load average {machine['load_before']:.2f} before the run"
        ),
        (
            f"{'fault':<12}{'tabs converged':<20}{'stored exact':<14}{'chars shown, not stored':<50}"
            f"{'log lines p1 / p2':<28}time to converge (last tab)"
        ),
        (
            f"{'target':<12}{'all':<20}{'all':<14}{f'0 (SIGKILL: ≤ {LOSS_SPAN_ALLOWED:g} s of stream each)':<50}"
            f"{'bounded (few per fault)':<28}≤ {CONVERGE_TARGET_S:g} s after the later of fault end and stored end"
        ),
        (
            f"{'':<12}(rows are read every {DB_POLL_EVERY:g} s: a stored end is seen up to that late, so a tab told at "
            "once converges '0.0 s' after it)"
        ),
    ]
    for r in results:
        lines += report_line(r)
    return "\n".join(lines)


def results_write(results: list[dict], machine: dict, args) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    date = datetime.now(UTC).isoformat(timespec="seconds")
    run = {"date": date, "machine": machine, "argv": sys.argv[1:]}
    stamped = [{"date": date, "commit": machine["commit"], **r} for r in results]
    by_fault = {r["fault"]: r for r in old.get("results", [])}
    by_fault.update({r["fault"]: r for r in stamped})
    order = [f.name for f in FAULTS]
    document = {
        "benchmark": "faults",
        "runs": [*old.get("runs", []), run],
        "results": sorted(by_fault.values(), key=lambda r: order.index(r["fault"]) if r["fault"] in order else 99),
    }
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def commit_describe() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=False, capture_output=True, text=True).stdout

    changed = git("status", "--porcelain", "chat", "yiweb").strip()
    return (git("rev-parse", "--short", "HEAD").strip() or "unknown") + (" +changes" if changed else "")


async def faults_run(setup: Setup, faults: list[Fault], people: int) -> list[dict]:
    results = []
    for fault in faults:
        started = time.monotonic()
        print(f"{fault.name}: {fault.description}", file=sys.stderr)
        result = await fault_run(setup, fault, people)
        results.append(result)
        print("\n".join(report_line(result)), file=sys.stderr)
        print(f"{fault.name}: took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    names = [f.name for f in FAULTS]
    parser = argparse.ArgumentParser(description="The fault matrix: two yiweb processes, tabs that must converge.")
    parser.add_argument("--fault", action="append", choices=names, help="run only this fault (repeatable)")
    parser.add_argument("--answers", type=int, default=20, help="answers per fault, each with two tabs (default 20)")
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{f.name:<12}{f.description}" for f in FAULTS))
        return 0
    faults = [f for f in FAULTS if not args.fault or f.name in args.fault]
    started = time.monotonic()
    machine = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg()[0],
        "commit": commit_describe(),
    }
    with setup_open(args.answers) as setup:
        results = asyncio.run(faults_run(setup, faults, args.answers))
    machine["load_after"] = os.getloadavg()[0]
    print(report(results, machine, args))
    results_write(results, machine, args)
    print(
        f"figures: {RESULTS.relative_to(REPO_ROOT)}; logs: {LOGS.relative_to(REPO_ROOT)}/; "
        f"whole run {time.monotonic() - started:.0f} s"
    )
    return 0  # a missed target is news, not a failure of the benchmark


if __name__ == "__main__":
    sys.exit(main())
