"""yiweb as a real Daphne subprocess, and a signed-in HTTP + websocket client for it.

Used by the browser test, the multi-process test and the benchmarks: nothing here
imports the app; everything goes over HTTP and websockets, as a browser would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import websockets

from tests.simulator_server import REPO_ROOT, running_daphne, running_simulator

START_TIMEOUT = 30.0
POSTGRES_ADMIN_URL = os.environ.get("POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/5")


def app_env(**extra: str) -> dict[str, str]:
    """Environment for a yiweb process: this one's, minus anything that points elsewhere.

    Development settings (DEBUG=1: no static files to collect) unless `extra` says
    otherwise, and no limit on sign-ups from one address, since every test user signs up
    from 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "YI_API_BASE", "YI_API_KEY"}}
    env.update({"DJANGO_SETTINGS_MODULE": "yiweb.settings", "PYTHONUNBUFFERED": "1", "DEBUG": "1",
                "SIGNUPS_PER_ADDRESS_PER_HOUR": "0",
                # One person runs many answers at once here; the per-person limits have
                # tests of their own (tests/test_limits.py).
                "USER_ANSWERS_AT_ONCE": "1000", "USER_SENDS_PER_MINUTE": "10000",
                # Nor is a key paced by its tier (tests/test_pacing.py turns it on).
                "PACING": "0"})
    env.update(extra)
    return env


@contextlib.contextmanager
def production_env(**extra: str) -> Iterator[dict[str, str]]:
    """Environment for yiweb as deployed: DEBUG off, a real secret, collected static files.

    HTTPS is not set (these servers speak plain HTTP on loopback), so cookies are not Secure."""
    with tempfile.TemporaryDirectory() as static_root:
        env = app_env(DEBUG="0", SECRET_KEY="benchmark-" + uuid.uuid4().hex * 2, STATIC_ROOT=static_root,
                      ENCRYPTION_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(), **extra)
        manage("collectstatic", "--noinput", env=env)
        yield env


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, check=True, capture_output=True)


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{folder}/yiweb.sqlite3"


def postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"yiweb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_answers(base: str) -> bool:
    try:
        httpx.get(f"{base}/accounts/login/", timeout=1)
        return True
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_app(env: dict[str, str], *, port: int | None = None,
                log_path: str | os.PathLike | None = None,
                server: str = "yiweb.server",
                application: str = "yiweb.asgi:application") -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve yiweb.asgi with Daphne on a free port; yields (base URL, process). Its output
    goes to `log_path` if given (appended, kept afterwards)."""
    with running_daphne(application, env, app_answers, port=port, timeout=START_TIMEOUT,
                        log_path=log_path, server=server) as running:
        yield running


@contextlib.contextmanager
def running_app_and_simulator(*, delta_ms: int, media_root: str | None = None) -> Iterator[tuple[str, dict, str]]:
    """yiweb on a SQLite file of its own, migrated, talking to a simulator of its own that
    paces tokens `delta_ms` apart: (base URL, its environment, the SQLite file's path)."""
    with running_simulator(env={"SIMULATOR_DELTA_MS": str(delta_ms)}) as simulator_url, sqlite_database() as database_url:
        env = app_env(DATABASE_URL=database_url, YI_API_BASE=simulator_url, YI_API_KEY="sk-test",
                      **({"MEDIA_ROOT": media_root} if media_root else {}))
        manage("migrate", "--noinput", env=env)
        with running_app(env) as (base, _):
            yield base, env, database_url.removeprefix("sqlite:///")


def signup(base: str, username: str, password: str = "correct horse battery staple") -> str:
    """Sign up through the real form; returns the session cookie value."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as client:
        client.get("/accounts/signup/")
        response = client.post(
            "/accounts/signup/",
            data={"username": username, "password1": password, "password2": password,
                  "csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Referer": f"{base}/accounts/signup/"},
        )
        assert response.status_code == 302, response.text[:500]
        return client.cookies["sessionid"]


@dataclass
class Socket:
    """A signed-in websocket to /ws/chat/ speaking JSON frames."""

    connection: websockets.ClientConnection

    @classmethod
    async def open(cls, base: str, session: str) -> Socket:
        url = base.replace("http://", "ws://") + "/ws/chat/"
        connection = await websockets.connect(
            url, origin=base, additional_headers={"Cookie": f"sessionid={session}"}, max_size=None
        )
        return cls(connection)

    async def send(self, frame: dict) -> None:
        await self.connection.send(json.dumps(frame))

    async def receive(self, timeout: float = 10.0) -> dict:
        import asyncio

        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def until(self, predicate, timeout: float = 30.0) -> list[dict]:
        import asyncio

        frames = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                frames.append(frame)
                if predicate(frame):
                    return frames

    async def close(self) -> None:
        await self.connection.close()
