"""`manage.py start`, the README's first command: offline defaults, end to end, and a clean stop."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.live_server import Socket, app_env, signup, sqlite_database
from tests.simulator_server import REPO_ROOT, free_port


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


async def test_start_without_a_key_chats_through_the_offline_simulator_and_stops_on_sigterm(tmp_path):
    port, simulator_port = free_port(), free_port()
    with sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, SIMULATOR_PORT=str(simulator_port), SIMULATOR_DELTA_MS="1")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "start", "--port", str(port)], cwd=REPO_ROOT, env=env,
            stdout=(tmp_path / "out.log").open("w"), stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: port_open(port) and port_open(simulator_port))
            session = signup(base, "owner")
            page = httpx.get(f"{base}/", cookies={"sessionid": session}).text
            assert "Answers come from the offline simulator" in page

            ws = await Socket.open(base, session)
            await ws.send({"type": "send", "conversation_id": None, "text": "Hello offline", "model": "yi-large"})
            done = (await ws.until(lambda f: f["type"] == "done"))[-1]
            await ws.close()
            assert done["message"]["status"] == "complete"
            assert "Hello offline" in done["message"]["content"]
            assert "offline simulator" in done["message"]["content"]

            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
            wait_until(lambda: not port_open(port) and not port_open(simulator_port), timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
