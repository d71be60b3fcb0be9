"""The README's first command, `manage.py start`, as a new user runs it: nothing configured,
so production settings (no DEBUG), a secret key made beside a new SQLite database, static
files collected, and the offline simulator. Only the database, the static folder and the
ports are moved, into a temporary folder and free ports."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.live_server import app_env
from tests.simulator_server import REPO_ROOT, free_port

START_TIMEOUT = 60.0  # migrations and collectstatic on a new database come first


def first_run_env(folder: Path, **extra: str) -> dict[str, str]:
    env = app_env(DATABASE_URL=f"sqlite:///{folder}/db.sqlite3", STATIC_ROOT=str(folder / "static"),
                  SIMULATOR_PORT=str(free_port()), SIMULATOR_DELTA_MS="1", **extra)
    for name in ("DEBUG", "SECRET_KEY", "SIGNUPS_PER_ADDRESS_PER_HOUR"):  # as a new user has them: unset
        if name not in extra:
            env.pop(name, None)
    return env


@contextlib.contextmanager
def readme_start(folder: Path, **extra: str) -> Iterator[tuple[str, Path]]:
    """Run `manage.py start` in `folder`; yields (base URL, log file) once it answers, and
    stops it with SIGTERM afterwards."""
    port = free_port()
    log_path = folder / f"start-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "manage.py", "start", "--port", str(port)], cwd=REPO_ROOT,
                                   env=first_run_env(folder, **extra), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"manage.py start did not answer (exit code {process.poll()}):\n"
                                   + log_path.read_text())
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
