"""A client that asks and never reads cannot make the server hold memory without end."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.live_server import Socket, app_env, manage, running_app, signup, sqlite_database
from tests.test_consumer import conversation_id_of


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


async def test_subscribe_frames_for_a_long_answer_from_a_socket_that_never_reads(simulator_url):
    """Before: 79 KB of subscribe frames took one process from 0.56 GB to 2.2 GB (a
    snapshot buffered per frame), and it kept that after the sockets closed."""
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test",
                      WEBSOCKET_BUFFER_MAX_BYTES=str(4 * 1024 * 1024))
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, process):
            session = signup(base, "mal")
            tab = await Socket.open(base, session)
            await tab.send({"type": "send", "conversation_id": None, "text": "[sim deltas=40000 interval=1]",
                            "model": "yi-large"})
            frames = await tab.until(lambda f: f["type"] == "delta" and f["seq"] >= 4000, timeout=60)
            conversation_id = conversation_id_of(frames)
            answer_id = frames[-1]["message_id"]
            before = rss_mb(process.pid)

            hostile = await websockets.connect(
                base.replace("http", "ws") + "/ws/chat/", origin=base,
                additional_headers={"Cookie": f"sessionid={session}"}, max_queue=1, max_size=None,
            )
            frame = json.dumps({"type": "subscribe", "conversation_id": conversation_id,
                                "holding": [{"message_id": answer_id, "last_seq": 0}]})
            dropped = False
            try:
                for _ in range(4000):  # ~400 KB of frames, each worth the whole answer so far
                    await hostile.send(frame)
            except websockets.ConnectionClosed:
                dropped = True
            # The server works through the frames for a while: its peak is what counts.
            peak = before
            for _ in range(40):
                await asyncio.sleep(0.5)
                peak = max(peak, rss_mb(process.pid))
            grown = peak - before
            # It does not read, so it learns of the drop only when it writes again.
            for _ in range(20):
                if dropped:
                    break
                try:
                    await hostile.send(frame)
                except (websockets.ConnectionClosed, OSError):
                    dropped = True
                await asyncio.sleep(0.1)
            # The honest tab is untouched: its answer goes on to the end.
            done = (await tab.until(lambda f: f["type"] == "done", timeout=120))[-1]
            await tab.close()

    assert grown < 100, f"the server grew by {grown:.0f} MB"
    assert dropped, "the socket that never reads was not dropped"
    assert done["message"]["status"] == "complete"
