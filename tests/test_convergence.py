"""Every tab ends up showing what the database holds (issue 11), with real parts: Daphne
processes, SQLite or PostgreSQL, a redis-server of the test's own that goes down, and
tabs that behave like our page (tests/tabs.py).

For every tab: its final text and status of every message equal the database row's, it
learned an answer's stored end within 5 s of its being stored (or of the outage's end),
no text was applied twice; and each server process's log stays short while things fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time

import pytest

from tests.live_server import (
    app_env,
    manage,
    postgres_available,
    postgres_database,
    running_app,
    signup,
    sqlite_database,
)
from tests.redis_server import own_redis, redis_server_available
from tests.tabs import Tab, converge, conversation_rows, database_rows, late, log_lines, log_size, text_problems

needs_postgres = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not running on 127.0.0.1:5432")
needs_redis_server = pytest.mark.skipif(
    not redis_server_available(), reason="redis-server is not installed (apt-get install redis-server)")

# What each process may log from the moment things start failing to the end of the test:
# a line when it starts failing and one when it works again (docs/websocket.md), with
# room for a few more; a traceback or two, not one per failed frame.
LOG_LINES_MAX = 20
TRACEBACKS_MAX = 2
ACCESS_LINE = re.compile(r"^\S+:\d+ - - \[")  # 127.0.0.1:50444 - - [06/Dec/2026:13:33:53] "WSCONNECT /ws/chat/" - -
# The refusals a send may get instead of being run (docs/websocket.md, error codes).
SEND_REFUSALS = {"not_saved", "busy"}


def tokens(count: int) -> str:
    return "".join(f"t{i} " for i in range(count))


def log_problems(logs: dict[str, tuple[str, int]]) -> list[str]:
    """logs: process name -> (log file, byte offset where the trouble started). Daphne's
    access lines (a socket opened, a page loaded) follow the tabs, not the server's own
    complaints: they are not counted."""
    problems = []
    for name, (path, since) in logs.items():
        lines = [line for line in log_lines(path, since) if not ACCESS_LINE.match(line)]
        tracebacks = sum(line.startswith("Traceback") for line in lines)
        if len(lines) > LOG_LINES_MAX or tracebacks > TRACEBACKS_MAX:
            problems.append(f"{name} logged {len(lines)} lines ({tracebacks} tracebacks), at most {LOG_LINES_MAX} "
                            f"({TRACEBACKS_MAX}) expected; the first:\n    " + "\n    ".join(lines[:8]))
    return problems


def report(problems: list[str], tabs: list[Tab]) -> str:
    """The problems, then what the tabs they name went through."""
    named = [tab for tab in tabs if any(problem.startswith(f"{tab.name}:") for problem in problems)]
    return "\n".join(problems) + "\n\nThe tabs:\n" + "\n".join(tab.describe() for tab in named or tabs)


@contextlib.contextmanager
def app_on_sqlite(simulator_url: str, log_path):
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test")
        manage("migrate", "--noinput", env=env)
        with running_app(env, log_path=log_path) as (base, process):
            yield database_url, base, process


@contextlib.contextmanager
def two_apps_on_postgres_and_redis(simulator_url: str, tmp_path):
    """Two processes sharing a fresh PostgreSQL database and a redis-server of this test's
    own; yields (database URL, the redis-server, [(base URL, process, log file)] * 2)."""
    with own_redis() as redis, postgres_database() as database_url:
        env = app_env(DATABASE_URL=database_url, REDIS_URL=redis.url, YI_API_BASE=simulator_url,
                      YI_API_KEY="sk-test")
        manage("migrate", "--noinput", env=env)
        logs = [tmp_path / "first.log", tmp_path / "second.log"]
        with running_app(env, log_path=logs[0]) as (first, first_process), \
                running_app(env, log_path=logs[1]) as (second, second_process):
            yield database_url, redis, [(first, first_process, logs[0]), (second, second_process, logs[1])]


async def closing(tabs: list[Tab]) -> None:
    await asyncio.gather(*(tab.close() for tab in tabs))


async def test_with_nothing_dropped_every_tab_converges(simulator_url, tmp_path):
    """The control: with no fault, the tab that sends and one that opens the conversation
    mid-answer both end equal to the database (this passes on any working server; if it
    fails, suspect tests/tabs.py first)."""
    log = tmp_path / "app.log"
    with app_on_sqlite(simulator_url, log) as (database_url, base, _):
        session = await asyncio.to_thread(signup, base, "cleo")
        since = log_size(log)
        sender = await Tab(base, session, name="sender").open()
        tabs = [sender]
        try:
            await sender.send("[sim deltas=200 interval=5]")
            await sender.until(lambda t: t.answer() is not None and t.answer().seq >= 20, 10, "seq 20")
            tabs.append(await Tab(base, session, name="joiner").open(sender.conversation_id))
            problems = await converge(tabs, database_url, timeout=10)
            problems += late(tabs, database_url, within=1.0) + text_problems(tabs)
            problems += log_problems({"the server": (log, since)})
            assert not problems, report(problems, tabs)
            assert [t.answer().text for t in tabs] == [tokens(200)] * 2
        finally:
            await closing(tabs)


@pytest.mark.parametrize("meanwhile", ["nothing", "another_tab_sends"])
async def test_a_socket_dropped_across_an_answers_end_learns_the_end(simulator_url, tmp_path, meanwhile):
    """The tab's socket is cut at seq 10 of a 2 s answer and comes back 4 s later: the
    answer has ended meanwhile, so no broadcast will ever tell the tab; its subscribe
    must. In the variant another tab sends a message while this one is away: on its
    return it must show it too (after_id)."""
    log = tmp_path / "app.log"
    with app_on_sqlite(simulator_url, log) as (database_url, base, _):
        session = await asyncio.to_thread(signup, base, "ana")
        since = log_size(log)
        tab = await Tab(base, session, name="away").open()
        tabs = [tab]
        try:
            await tab.send("[sim deltas=100 interval=20]")
            await tab.drop_when(lambda t: t.answer() is not None and t.answer().seq >= 10, reconnect_after=4.0)
            first_answer = tab.answer().id
            assert tab.answer().seq == 10
            if meanwhile == "another_tab_sends":
                other = await Tab(base, session, name="other").open(tab.conversation_id)
                tabs.append(other)
                await other.until(lambda t: not t.streaming(), 10, "end of the first answer")
                await other.send("[sim deltas=20 interval=10] while the first tab is away")
                await other.until(lambda t: len(t.messages) == 4 and not t.streaming(), 10, "second answer")
                assert tab.connection is None, "the away tab came back too early for this test"

            problems = await converge(tabs, database_url, timeout=15)
            problems += late(tabs, database_url) + text_problems(tabs)
            problems += log_problems({"the server": (log, since)})
            assert not problems, report(problems, tabs)
            assert conversation_rows(database_url, tab.conversation_id)[first_answer]["content"] == tokens(100)
        finally:
            await closing(tabs)


@needs_postgres
@needs_redis_server
async def test_redis_outage_mid_answer_two_processes(simulator_url, tmp_path):
    """Six answers stream, each watched by a tab on each of two processes; Redis goes down
    for 5 s, during which the answers end and two more sends are made; the first send on
    each process after it comes back follows at once. Every tab must show every answer's
    stored end, no send may be orphaned, and a resend of each gets its real state."""
    with two_apps_on_postgres_and_redis(simulator_url, tmp_path) as (database_url, redis, apps):
        bases = [base for base, _, _ in apps]
        session = await asyncio.to_thread(signup, bases[0], "olga")
        tabs: list[Tab] = []
        try:
            senders = [await Tab(bases[i % 2], session, name=f"sender{i}@{i % 2}").open() for i in range(6)]
            idle = [await Tab(bases[p], session, name=f"idle@{p}").open() for p in (0, 1)]
            tabs += senders + idle
            sent_at = time.monotonic()
            for i, tab in enumerate(senders):
                # 4 s each, on the simulator's fixed schedule; the outage starts 1.5 s in and
                # lasts 5 s, so each ends 2.5 s into it.
                await tab.send(f"[sim deltas=400 interval=10] answer {i}")
            for tab in senders:
                await tab.until(lambda t: t.answer() is not None, 10, "its answer")
            watchers = [await Tab(bases[(i + 1) % 2], session, name=f"watcher{i}@{(i + 1) % 2}").open(s.conversation_id)
                        for i, s in enumerate(senders)]
            tabs += watchers
            for tab in senders + watchers:
                await tab.until(lambda t: t.answer().seq >= 10, 10, "seq 10")
            await asyncio.sleep(sent_at + 1.5 - time.monotonic())

            marks = {f"process {p}": (apps[p][2], log_size(apps[p][2])) for p in (0, 1)}
            redis.stop()
            outage_start = time.time()
            await asyncio.sleep(1.0)
            during = [(tab, await tab.send(f"[sim deltas=100 interval=10] during {p}")) for p, tab in enumerate(idle)]
            await asyncio.sleep(4.0)
            await asyncio.to_thread(redis.start)
            outage_end = time.time()
            after = [(tab, await tab.send(f"[sim deltas=100 interval=10] after {p}"))
                     for p, tab in enumerate(senders[:2])]

            problems = await converge(tabs, database_url, timeout=12)
            problems += late(tabs, database_url, since=outage_end) + text_problems(tabs)
            for tab in senders:
                first = min(m.id for m in tab.messages.values() if m.role == "assistant")
                stored_at = conversation_rows(database_url, tab.conversation_id)[first]["stored_at"]
                if not outage_start < stored_at < outage_end:
                    problems.append(f"(the test's timing) {tab.name}'s answer ended {stored_at - outage_start:.1f} s "
                                    f"into an outage of {outage_end - outage_start:.1f} s")
            for tab, client_id in during + after:
                stored = database_rows(database_url, "client_id = %s", (client_id,))
                if client_id in tab.refused:
                    code = tab.refused[client_id]["code"]
                    if code not in SEND_REFUSALS or stored:
                        problems.append(f"{tab.name}: send {client_id} refused with {code!r}, stored: {bool(stored)}")
                elif not stored:
                    problems.append(f"{tab.name}: send {client_id} neither stored nor refused")
                elif client_id in tab.pending:
                    problems.append(f"{tab.name}: send {client_id} was stored but the tab was never told")
            streaming = database_rows(database_url, "status = %s", ("streaming",))
            if streaming:
                problems.append(f"left streaming in the database (orphaned): {sorted(streaming)}")
            problems += await resend_problems(during + after, session, database_url, tabs)
            problems += log_problems(marks)
            assert not problems, report(problems, tabs)
        finally:
            await closing(tabs)


async def resend_problems(sends: list[tuple[Tab, str]], session: str, database_url: str, tabs: list[Tab]) -> list[str]:
    """Each send again, the same frame from a fresh tab on the same page: a stored one is
    answered with its real state (and not stored twice), a refused one runs now."""

    async def resend(tab: Tab, client_id: str) -> list[str]:
        frame = tab.sent[client_id]
        before = database_rows(database_url, "client_id = %s", (client_id,))
        fresh = await Tab(tab.bases, session, name=f"resend of {tab.name}").open(frame["conversation_id"])
        tabs.append(fresh)
        await fresh.send(frame["text"], client_id=client_id)
        with contextlib.suppress(AssertionError):
            await fresh.until(lambda t: not t.pending and not t.streaming(), 8)
        problems = []
        if client_id in fresh.pending:
            problems.append(f"{fresh.name}: resent {client_id} ({'stored' if before else 'not stored'}): "
                            "no answer from the server")
        if before and client_id in fresh.refused:
            problems.append(f"{fresh.name}: resent {client_id}, stored, refused: {fresh.refused[client_id]}")
        if len(database_rows(database_url, "client_id = %s", (client_id,))) > 1:
            problems.append(f"{fresh.name}: resent {client_id}: stored twice")
        return problems + await converge([fresh], database_url, timeout=1)

    results = await asyncio.gather(*(resend(tab, client_id) for tab, client_id in sends))
    return [problem for problems in results for problem in problems]


@needs_postgres
@needs_redis_server
async def test_sigterm_with_tabs_on_the_stopping_process(simulator_url, tmp_path):
    """A deploy stops one of two processes mid-answer: its tabs are closed with 4012 and
    come back on the other (the load balancer), and every tab shows each answer's stored
    end: interrupted with all its text for the stopped process's answers, complete for
    the survivor's."""
    with two_apps_on_postgres_and_redis(simulator_url, tmp_path) as (database_url, _, apps):
        (doomed, doomed_process, doomed_log), (survivor, _, survivor_log) = apps
        session = await asyncio.to_thread(signup, survivor, "pia")
        tabs: list[Tab] = []
        try:
            # Answers 0 and 2 run in the doomed process, 1 and 3 in the survivor; each is
            # watched by a tab on the other process too.
            homes = [(doomed, survivor) if i % 2 == 0 else (survivor, doomed) for i in range(4)]
            senders = [await Tab(list(homes[i]), session, name=f"sender{i}").open() for i in range(4)]
            for i, tab in enumerate(senders):
                await tab.send(f"[sim deltas=1000 interval=5] answer {i}")  # 5 s each
            for tab in senders:
                await tab.until(lambda t: t.answer() is not None, 10, "its answer")
            watchers = [await Tab(list(reversed(homes[i])), session, name=f"watcher{i}").open(s.conversation_id)
                        for i, s in enumerate(senders)]
            tabs += senders + watchers
            for tab in tabs:
                await tab.until(lambda t: t.answer().seq >= 50, 10, "seq 50")
            on_doomed = [tab for tab in tabs if tab.bases[0] == doomed]
            marks = {"the stopping process": (doomed_log, log_size(doomed_log)),
                     "the survivor": (survivor_log, log_size(survivor_log))}

            doomed_process.terminate()
            exit_code = await asyncio.to_thread(doomed_process.wait, 15)
            problems = await converge(tabs, database_url, timeout=12)
            problems += late(tabs, database_url) + text_problems(tabs)
            if exit_code != 0:
                problems.append(f"the stopping process exited with {exit_code}")
            for tab in on_doomed:
                if tab.close_codes[:1] != [4012]:  # docs/websocket.md: 1012, as a server may send it
                    problems.append(f"{tab.name}: its socket on the stopping process closed with "
                                    f"{tab.close_codes[:1]}, not 4012")
            for i, tab in enumerate(senders):
                row = conversation_rows(database_url, tab.conversation_id)[tab.answer().id]
                seen = max(t.shown_seq(row["id"]) for t in tabs)
                if i % 2 == 0:
                    ended = (row["status"], row["error_message"])
                    if ended != ("interrupted", "The server stopped while answering."):
                        problems.append(f"answer {i} (stopped process): {ended}")
                    if not tokens(1000).startswith(row["content"]) or row["seq"] < seen:
                        problems.append(f"answer {i} (stopped process): stored up to seq {row['seq']}, a tab was "
                                        f"shown seq {seen}")
                elif (row["status"], row["content"]) != ("complete", tokens(1000)):
                    problems.append(f"answer {i} (survivor): {row['status']}, {len(row['content'])} chars")
            problems += log_problems(marks)
            assert not problems, report(problems, tabs)
        finally:
            await closing(tabs)


@contextlib.contextmanager
def endings_refused(database: str):
    """The SQLite file refuses to store any answer's ending (an UPDATE of `status`) with
    an error that can pass (OperationalError, as a locked or read-only database gives),
    until the block ends; checkpoints and sends still work. A trigger that writes to a
    table dropped after it was made: a real refusal from another connection, which a
    Daphne process cannot tell from a database that is down."""
    with contextlib.closing(sqlite3.connect(database, timeout=20, isolation_level=None)) as db:
        db.execute("CREATE TABLE ending_refused (x)")
        db.execute("CREATE TRIGGER refuse_endings BEFORE UPDATE OF status ON chat_message "
                   "BEGIN INSERT INTO ending_refused VALUES (1); END")
        db.execute("DROP TABLE ending_refused")
        try:
            yield
        finally:
            db.execute("DROP TRIGGER refuse_endings")


async def test_a_send_right_after_a_not_saved_ending_waits_instead_of_failing_busy(simulator_url, tmp_path):
    """An answer's ending is refused by the database until after the tab has been told
    `not_saved` and has sent its next message: that send waits for the ending to be
    stored (the database takes it a second later) and then runs, instead of `busy`."""
    log = tmp_path / "app.log"
    with app_on_sqlite(simulator_url, log) as (database_url, base, _):
        session = await asyncio.to_thread(signup, base, "nora")
        tab = await Tab(base, session, name="tab").open()
        try:
            await tab.send("[sim deltas=30 interval=20] first")
            await tab.until(lambda t: t.answer() is not None and t.answer().seq >= 1, 10, "first delta")
            since = log_size(log)
            with endings_refused(database_url.removeprefix("sqlite:///")):
                await tab.until(lambda t: not t.streaming(), 15, "the not_saved ending")
                assert tab.answer().final["error_code"] == "not_saved", tab.describe()
                client_id = await tab.send("[sim deltas=5 interval=0] second")
                await asyncio.sleep(1.0)

            problems = await converge([tab], database_url, timeout=10)
            problems += late([tab], database_url) + text_problems([tab])
            if client_id in tab.refused:
                problems.append(f"the send right after the not_saved ending was refused: {tab.refused[client_id]}")
            rows = conversation_rows(database_url, tab.conversation_id).values()
            stored = [(r["role"], r["status"], r["content"]) for r in rows]
            if [row[:2] for row in stored] != [("user", "complete"), ("assistant", "complete")] * 2:
                problems.append(f"stored: {[(role, status, content[:30]) for role, status, content in stored]}")
            problems += log_problems({"the server": (log, since)})
            assert not problems, report(problems, [tab])
        finally:
            await tab.close()
