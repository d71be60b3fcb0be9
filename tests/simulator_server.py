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
from collections.abc import AsyncIterator, Callable, Iterator
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
def running_daphne(application: str, env: dict, ready: Callable[[str], bool], *, port: int | None = None,
                   timeout: float = START_TIMEOUT,
                   log_path: str | os.PathLike | None = None,
                   server: str = "yiweb.server") -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve an ASGI application with Daphne in a subprocess; yield (http://127.0.0.1:PORT, process)
    once `ready(base)` is true, and stop it afterwards. Its output (stdout and stderr) goes
    to `log_path` if given (appended, kept afterwards), else to a temporary file. `server`
    is the module run (bench/loop_probe.py wraps yiweb.server)."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    # Logs go to a file, not a pipe: nobody drains a pipe while tests run, and a full
    # pipe would freeze the server mid-stream.
    with open(log_path, "a+b") if log_path is not None else tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", server, "-b", "127.0.0.1", "-p", str(port), application],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not ready(base):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        f"{application} did not answer at {base} within {timeout:.0f} s "
                        f"(exit code {process.poll()}). Its output:\n" + log.read().decode(errors="replace"))
                time.sleep(0.05)
            yield base, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def running_simulator(env: dict | None = None) -> Iterator[str]:
    """Start the simulator on a free port and yield its base URL, http://127.0.0.1:PORT/v1.

    `env` adds environment variables (SIMULATOR_DELTA_MS, SIMULATOR_API_KEY, ...).
    """
    env = {**os.environ, **(env or {})}
    key = env.get("SIMULATOR_API_KEY") or "sk-simulator"
    with running_daphne("chat.simulator:app", env, lambda base: simulator_answers(f"{base}/v1", key)) as (base, _):
        yield f"{base}/v1"


@contextlib.asynccontextmanager
async def canned_api(body: bytes, headers: dict[str, str] | None = None, *, status: int = 200,
                     received: list | None = None):
    """An API that answers every chat completion with these exact bytes (and `status`), for
    answers the simulator has no directive for; yield its base URL, http://127.0.0.1:PORT/v1.
    `received` gets each request's JSON body, as it reached the API."""
    from aiohttp import web

    async def completions(request: web.Request) -> web.Response:
        if received is not None:
            received.append(await request.json())
        return web.Response(
            status=status, body=body, headers={"Content-Type": "text/event-stream", **(headers or {})}
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with api_served(app) as url:
        yield url


@contextlib.asynccontextmanager
async def api_served(app) -> AsyncIterator[str]:
    """`app` (an aiohttp web.Application) served on a free local port: its base URL as an
    API's ("http://127.0.0.1:N/v1")."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()
