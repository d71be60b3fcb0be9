"""Settings come from the environment: checked in a fresh interpreter per case."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.live_server import app_env
from tests.simulator_server import REPO_ROOT

PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'db': str(s.DATABASES['default']['NAME']), "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'base': s.YI_API_BASE, 'simulator': s.YI_SIMULATOR, "
    "'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, 'db_options': s.DATABASES['default'].get('OPTIONS', {}), "
    "'prefix': s.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix')}))"
)


def settings_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=REPO_ROOT, env=app_env(**env), capture_output=True, text=True
    )


def test_defaults_are_sqlite_in_memory_layer_and_the_offline_simulator():
    result = settings_with()
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3" and values["db"].endswith("db.sqlite3")
    assert values["layer"] == "chat.layers.InMemoryChannelLayer"
    assert values["simulator"] is True and values["base"] == "http://127.0.0.1:8001/v1"
    assert values["debug"] is True


def test_api_key_switches_to_the_yi_api():
    values = json.loads(settings_with(YI_API_KEY="sk-real").stdout)
    assert values["simulator"] is False and values["base"] == "https://api.01.ai/v1"


def test_database_and_redis_urls_select_postgresql_and_channels_redis():
    values = json.loads(settings_with(DATABASE_URL="postgres://u:p@db:5432/yiweb", REDIS_URL="redis://r:6379/0").stdout)
    assert values["engine"] == "django.db.backends.postgresql" and values["db"] == "yiweb"
    assert values["layer"] == "chat.redis_layer.RedisPubSubChannelLayer"  # channels_redis's, riding out outages


def test_postgresql_connections_give_up_after_a_connect_timeout():
    default = json.loads(settings_with(DATABASE_URL="postgres://u:p@db:5432/yiweb").stdout)
    assert default["db_options"]["connect_timeout"] == 5
    chosen = json.loads(settings_with(DATABASE_URL="postgres://u:p@db:5432/yiweb", DATABASE_CONNECT_TIMEOUT="2").stdout)
    assert chosen["db_options"]["connect_timeout"] == 2


def test_production_refuses_to_start_without_a_real_secret_key():
    result = settings_with(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_real_secret_key():
    result = settings_with(DEBUG="0", SECRET_KEY="k" * 50, ALLOWED_HOSTS="chat.example.com")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is False and values["hosts"] == ["chat.example.com"]


def test_sqlite_runs_in_wal_mode(tmp_path):
    database = tmp_path / "wal.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO_ROOT, check=True, capture_output=True,
        env=app_env(DATABASE_URL=f"sqlite:///{database}"),
    )
    import sqlite3

    assert sqlite3.connect(database).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_postgresql_server_that_never_answers_fails_the_connection_within_its_timeout():
    """A frozen database (it accepts the connection, then says nothing) must not hold a query for ever."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); from django.db import connection; "
             "connection.ensure_connection()"],
            cwd=REPO_ROOT, env=app_env(DATABASE_URL=f"postgres://u:p@127.0.0.1:{port}/yiweb", DATABASE_CONNECT_TIMEOUT="2"),
            capture_output=True, text=True, timeout=30,
        )
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode != 0 and "timeout" in result.stderr.lower()
    assert took < 10, took


def test_each_database_gets_its_own_channel_prefix_unless_one_is_set():
    first = json.loads(settings_with(DATABASE_URL="postgres://u:p@db:5432/one", REDIS_URL="redis://r:6379/0").stdout)
    second = json.loads(settings_with(DATABASE_URL="postgres://u:p@db:5432/two", REDIS_URL="redis://r:6379/1").stdout)
    assert first["prefix"].startswith("yiweb-one-") and second["prefix"].startswith("yiweb-two-")
    chosen = json.loads(settings_with(REDIS_URL="redis://r:6379/0", CHANNEL_PREFIX="blue").stdout)
    assert chosen["prefix"] == "blue."
