"""Run the offline Yi API simulator (chat.simulator) as a real Daphne subprocess."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simulator_answers(base_url: str, key: str) -> bool:
    """True once the server answers HTTP at all (a 401 still means it is up)."""
    request = urllib.request.Request(
        f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@contextlib.contextmanager
def running_simulator(env: dict | None = None) -> Iterator[str]:
    """Start the simulator on a free port and yield its base URL, http://127.0.0.1:PORT/v1.

    `env` adds environment variables (SIMULATOR_DELTA_MS, SIMULATOR_API_KEY, ...).
    """
    env = {**os.environ, **(env or {})}
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    # Logs go to a file, not a pipe: nobody drains a pipe while tests run, and a full
    # pipe would freeze the server mid-stream.
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "chat.simulator:app"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            key = env.get("SIMULATOR_API_KEY") or "sk-simulator"
            while not simulator_answers(base_url, key):
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr.seek(0)
                    raise RuntimeError(
                        f"The Yi API simulator did not answer at {base_url} within "
                        f"{START_TIMEOUT:.0f} s (exit code {process.poll()}). Its stderr:\n"
                        + stderr.read().decode(errors="replace"))
                time.sleep(0.05)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
