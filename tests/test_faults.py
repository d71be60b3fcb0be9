"""Faults that must not lose an answer: dropped sockets, a killed server process, a slow reader."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import time

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.live_server import Socket, app_env, manage, running_app, signup, sqlite_database
from tests.test_consumer import another_connection_writing, conversation_id_of, frames_until, is_done, send

EXPECTED_2000 = "".join(f"t{i} " for i in range(2000))


@pytest.mark.django_db(transaction=True)
async def test_socket_dropped_at_100_random_points_resumes_with_no_gap_and_no_duplicate(user, connect, settings):
    """A browser-like client: apply deltas by seq, drop the socket, reconnect with last_seq, repeat."""
    settings.RELAY_FRAMES_PER_SECOND = 0  # a frame per token: 100 drops need more frames than merging leaves
    rng = random.Random(20261124)
    ws = await connect(user)
    # 12 s of answer: 100 reconnects must fit in it on a slow, busy machine (at 1 ms apart,
    # 2 s, a run with other work beside it managed 85; in 6 s, a suite run beside other
    # sessions' tests managed 76). The loop ends with the answer, so this is a bound only.
    await send(ws, "[sim deltas=4000 interval=3]")
    frames = await frames_until(ws, lambda f: f["type"] == "delta")
    conversation_id = conversation_id_of(frames)
    answer_id = frames[-1]["message_id"]
    text, last_seq = frames[-1]["text"], frames[-1]["seq"]
    assert last_seq == 1

    drops, final = 0, None
    while final is None:
        if drops < 100:
            await ws.disconnect()
            drops += 1
            ws = await connect(user)
            await ws.send_json_to(
                {"type": "subscribe", "conversation_id": conversation_id, "message_id": answer_id, "last_seq": last_seq})
        budget = rng.randint(1, 12) if drops < 100 else 10**9
        while budget and final is None:
            frame = await ws.receive_json_from(timeout=10)
            if frame.get("message_id") != answer_id:
                continue
            if frame["type"] == "snapshot":
                assert frame["from_seq"] in (last_seq, 0)
                text = (text if frame["from_seq"] == last_seq else "") + frame["text"]
                last_seq = frame["seq"]
            elif frame["type"] == "delta":
                if frame["seq"] <= last_seq:
                    continue  # already applied
                assert frame["seq"] == last_seq + 1, f"gap: {frame['seq']} after {last_seq}"
                text += frame["text"]
                last_seq = frame["seq"]
                budget -= 1
            elif frame["type"] == "done":
                final = frame
    assert drops == 100
    expected = "".join(f"t{i} " for i in range(4000))
    assert text == expected
    assert final["message"]["content"] == expected
    assert (await database_sync_to_async(Message.objects.get)(pk=answer_id)).content == expected


def checkpoint_of(database: str, message_id: int) -> tuple[str, str, int]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT status, content, seq FROM chat_message WHERE id = ?", (message_id,)).fetchone()


async def test_killed_server_process_leaves_an_interrupted_answer_with_its_last_checkpoint(simulator_url):
    """Two processes share one SQLite file; the one generating is killed with SIGKILL mid-answer."""
    stale_after = 2.0
    with sqlite_database() as database_url:
        database = database_url.removeprefix("sqlite:///")
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test",
                      CHECKPOINT_INTERVAL="0.2", GENERATION_STALE_AFTER=str(stale_after))
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (doomed, doomed_process), running_app(env) as (survivor, _):
            session = signup(survivor, "ivan")
            victim = await Socket.open(doomed, session)
            await victim.send({"type": "send", "conversation_id": None, "text": "[sim deltas=5000 interval=2]",
                               "model": "yi-large"})
            frames = await victim.until(lambda f: f["type"] == "delta" and f["seq"] >= 50)
            conversation_id = conversation_id_of(frames)
            answer_id = frames[-1]["message_id"]
            await asyncio.sleep(0.5)  # at least one checkpoint after the 50th delta
            os.kill(doomed_process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            status, checkpoint, seq = checkpoint_of(database, answer_id)
            assert status == "streaming" and checkpoint and seq > 0

            watcher = await Socket.open(survivor, session)
            await watcher.send({"type": "subscribe", "conversation_id": conversation_id})
            done = (await watcher.until(lambda f: f["type"] == "done", timeout=stale_after * 3 + 5))[-1]
            took = time.monotonic() - killed_at
            await watcher.close()

    assert done["message"]["status"] == "interrupted"
    assert done["message"]["content"] == checkpoint and done["seq"] == seq
    assert EXPECTED_2000.startswith(checkpoint[:1000])
    # Stale after 2 s, swept every 1 s: ended within a few seconds, not left spinning forever.
    assert took < stale_after * 3 + 2


@contextlib.asynccontextmanager
async def long_answer_streaming(simulator_url: str, username: str, **settings: str):
    """yiweb on a SQLite file of its own, a tab 50 tokens into a long answer; yields
    (the database's path, the server process, the tab, its frames so far)."""
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test", **settings)
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, process):
            tab = await Socket.open(base, signup(base, username))
            await tab.send({"type": "send", "conversation_id": None, "text": "[sim deltas=5000 interval=2]",
                            "model": "yi-large"})
            frames = await tab.until(lambda f: f["type"] == "delta" and f["seq"] >= 50)
            yield database_url.removeprefix("sqlite:///"), process, tab, frames


async def test_a_server_told_to_stop_mid_answer_ends_it_as_interrupted_keeping_all_it_sent(simulator_url):
    """SIGTERM, as a deploy or `docker stop` sends: the answer ends at once, not half a
    minute later by another process's sweep, and keeps the text the tab was shown, not
    only the last checkpoint."""
    import websockets

    # Checkpoints far apart: all the text can only be stored if the stopping process stores it.
    async with long_answer_streaming(simulator_url, "jo", CHECKPOINT_INTERVAL="30") as (database, process, tab, frames):
        answer_id = frames[-1]["message_id"]
        process.terminate()
        try:
            while True:
                frames.append(await tab.receive())
        except websockets.ConnectionClosed as closed:
            # The page reconnects at once on this code, instead of backing off as after a drop (1006).
            assert closed.rcvd is not None and closed.rcvd.code == 4012, closed
        assert process.wait(timeout=10) == 0
        status, content, seq = checkpoint_of(database, answer_id)
        with sqlite3.connect(database) as db:
            (error_message,) = db.execute("SELECT error_message FROM chat_message WHERE id = ?", (answer_id,)).fetchone()

    shown = "".join(f["text"] for f in frames if f["type"] == "delta" and f["message_id"] == answer_id)
    assert (status, error_message) == ("interrupted", "The server stopped while answering.")
    assert content.startswith(shown) and EXPECTED_2000.startswith(content[:1000])
    assert seq >= max(f["seq"] for f in frames if f["type"] == "delta")


async def test_a_server_told_to_stop_while_the_database_is_locked_stops_within_its_wait(simulator_url):
    """The stop's promise is a few seconds, not the database's: an ending that cannot be
    stored in time is left to the sweep, and the process exits anyway."""
    from chat.shutdown import SHUTDOWN_TIMEOUT

    async with long_answer_streaming(simulator_url, "kim") as (database, process, tab, frames):
        answer_id = frames[-1]["message_id"]
        # Another process holds the write lock longer than SQLite's 20 s busy timeout.
        with another_connection_writing(60, database=database):
            process.terminate()
            stopping = time.monotonic()
            exit_code = await asyncio.to_thread(process.wait, 30)
            took = time.monotonic() - stopping
        await tab.close()
        status, _, _ = checkpoint_of(database, answer_id)

    assert exit_code == 0 and took < SHUTDOWN_TIMEOUT + 3
    assert status == "streaming"  # left to the sweep, with its last checkpoint


async def test_a_reader_that_stops_reading_slows_neither_the_answer_nor_another_tab(simulator_url):
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test")
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, _):
            session = signup(base, "judy")
            import websockets

            reader = await Socket.open(base, session)
            await reader.send({"type": "send", "conversation_id": None, "text": "[sim deltas=1 interval=0]",
                               "model": "yi-large"})
            conversation_id = conversation_id_of(await reader.until(is_done))
            # A tab whose network is stuck: it never reads, so TCP pushes back on the server.
            stuck = await websockets.connect(
                base.replace("http", "ws") + "/ws/chat/", origin=base,
                additional_headers={"Cookie": f"sessionid={session}"}, max_queue=1,
            )
            await stuck.send(f'{{"type": "subscribe", "conversation_id": {conversation_id}}}')
            await asyncio.sleep(0.2)
            started = time.monotonic()
            # Long deltas so that the stuck tab's buffers fill up.
            await reader.send({"type": "send", "conversation_id": conversation_id,
                               "text": "[sim deltas=3000 interval=0.5]", "model": "yi-large"})
            frames = await reader.until(is_done, timeout=60)
            took = time.monotonic() - started
            text = "".join(f["text"] for f in frames if f["type"] == "delta")
            assert text == "".join(f"t{i} " for i in range(3000))
            assert frames[-1]["message"]["status"] == "complete"
            # 3000 deltas at 0.5 ms are ~1.5 s upstream (more with sleep granularity): the stuck tab
            # must not hold the generation back.
            assert took < 15, took
            await stuck.close()
            await reader.close()
