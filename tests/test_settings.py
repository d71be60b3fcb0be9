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


STRONG_KEY = "f3Jq9-vKx2LmZ8rT0aBcYdWeN5hGuPs7iOkE4lQwXyV1zR6tUj"
# A Fernet key, so that production settings on the default database do not make a key
# file beside the repository's db.sqlite3.
FERNET_KEY = "q8Vd3m0K0n7b7vJ0m8WmC0Zr2xH4y6Yp5pQ9sT1uV2w="


def settings_with(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS], cwd=REPO_ROOT, env=app_env(**env), capture_output=True, text=True
    )


def settings_values(*names: str, **env: str | None) -> dict:
    """The named settings as a fresh process reads them from `env` (None: that variable unset,
    even the DEBUG=1 that app_env gives the suite's servers)."""
    environment = app_env(**{k: v for k, v in env.items() if v is not None})
    for name in [k for k, v in env.items() if v is None]:
        environment.pop(name, None)
    code = ("import json, django; django.setup(); from django.conf import settings as s; "
            f"print(json.dumps({{n: getattr(s, n, None) for n in {list(names)!r}}}, default=str))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_sqlite_in_memory_layer_and_the_offline_simulator():
    result = settings_with()
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3" and values["db"].endswith("db.sqlite3")
    assert values["layer"] == "chat.layers.InMemoryChannelLayer"
    assert values["simulator"] is True and values["base"] == "http://127.0.0.1:8001/v1"


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


def test_production_on_postgresql_refuses_to_start_without_an_encryption_key():
    result = settings_with(DEBUG="0", DATABASE_URL="postgres://u:p@db:5432/yiweb", SECRET_KEY=STRONG_KEY)
    assert result.returncode != 0
    assert "the database is not a SQLite file, so ENCRYPTION_KEYS must be set" in result.stderr


def test_production_on_postgresql_refuses_to_start_without_a_secret_key():
    result = settings_with(DEBUG="0", DATABASE_URL="postgres://u:p@db:5432/yiweb")
    assert result.returncode != 0
    assert "the database is not a SQLite file, so SECRET_KEY must be set" in result.stderr


def test_production_starts_with_a_real_secret_key():
    result = settings_with(DEBUG="0", SECRET_KEY=STRONG_KEY, ENCRYPTION_KEYS=FERNET_KEY, ALLOWED_HOSTS="chat.example.com")
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


# --- production by default, and behind TLS ----------------------------------------------


def test_debug_is_off_unless_asked_for(tmp_path):
    database = f"sqlite:///{tmp_path}/db.sqlite3"
    assert settings_values("DEBUG", DEBUG=None, DATABASE_URL=database) == {"DEBUG": False}
    assert settings_values("DEBUG", DEBUG="1", DATABASE_URL=database) == {"DEBUG": True}


def test_production_makes_a_secret_key_beside_the_sqlite_database_and_keeps_it(tmp_path):
    import hashlib
    import os
    import stat

    environment = app_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    del environment["DEBUG"]
    code = ("import django; django.setup(); from django.conf import settings as s; import hashlib; "
            "print(s.SECRET_KEY_FILE, hashlib.sha256(s.SECRET_KEY.encode()).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True,
                           text=True, check=True) for _ in range(2)]
    key_file = tmp_path / "db.sqlite3.secret-key"
    key = key_file.read_text().strip()
    assert runs[0].stdout.split() == [str(key_file), hashlib.sha256(key.encode()).hexdigest()]
    assert runs[1].stdout == runs[0].stdout  # the second start reads the same key: sessions survive it
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert len(key) >= 50
    assert all(key not in run.stdout + run.stderr for run in runs)


def test_processes_starting_together_on_a_new_database_agree_on_one_secret_key(tmp_path):
    environment = app_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    del environment["DEBUG"]
    code = "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY, s.ENCRYPTION_KEYS)"
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment,
                                  stdout=subprocess.PIPE, text=True) for _ in range(8)]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    secret_key = (tmp_path / "db.sqlite3.secret-key").read_text().strip()
    encryption_key = (tmp_path / "db.sqlite3.encryption-key").read_text().strip()
    assert keys == {f"{secret_key} {[encryption_key]}"}
    # No temporary file left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.sqlite3.encryption-key", "db.sqlite3.secret-key"]


def test_production_refuses_a_weak_secret_key(tmp_path):
    database = f"sqlite:///{tmp_path}/db.sqlite3"
    for weak, reason in [(STRONG_KEY[:49], "it has 49 characters, fewer than 50"),
                         ("k" * 60, "fewer than 5 different characters"),
                         ("django-insecure-" + STRONG_KEY, "starts with 'django-insecure-'")]:
        result = settings_with(DEBUG="0", SECRET_KEY=weak, DATABASE_URL=database)
        assert result.returncode != 0
        assert "SECRET_KEY must be a strong random value" in result.stderr and reason in result.stderr
    assert not (tmp_path / "db.sqlite3.secret-key").exists()


SECURITY = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER")


def test_production_over_plain_http_sends_cookies_without_secure_and_trusts_no_proxy_header():
    """The first run is over http://127.0.0.1:8000: Secure cookies would not come back, and
    with no proxy in front a client could claim HTTPS with X-Forwarded-Proto."""
    values = settings_values(*SECURITY, DEBUG="0", SECRET_KEY=STRONG_KEY, ENCRYPTION_KEYS=FERNET_KEY)
    assert values == {"SESSION_COOKIE_SECURE": False, "CSRF_COOKIE_SECURE": False, "SECURE_SSL_REDIRECT": False,
                      "SECURE_HSTS_SECONDS": 0, "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
                      "SECURE_HSTS_PRELOAD": False, "SECURE_PROXY_SSL_HEADER": None}


def test_https_turns_on_secure_cookies_the_redirect_and_hsts():
    values = settings_values(*SECURITY, DEBUG="0", SECRET_KEY=STRONG_KEY, ENCRYPTION_KEYS=FERNET_KEY, HTTPS="1")
    assert values == {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
                      "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
                      "SECURE_HSTS_PRELOAD": True, "SECURE_PROXY_SSL_HEADER": None}
    assert settings_values("SECURE_HSTS_SECONDS", HTTPS="1", HSTS_SECONDS="300") == {"SECURE_HSTS_SECONDS": 300}


def test_the_proxy_https_header_is_trusted_only_when_named():
    assert settings_values("SECURE_PROXY_SSL_HEADER", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto") == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}
    assert settings_values("SECURE_PROXY_SSL_HEADER", SECURE_PROXY_SSL_HEADER="X-Forwarded-Ssl: on") == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_SSL", "on"]}


def test_check_deploy_is_clean_behind_tls(tmp_path):
    environment = app_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3", SECRET_KEY=STRONG_KEY, HTTPS="1",
                          SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", ALLOWED_HOSTS="chat.example.com")
    del environment["DEBUG"]
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_sign_in_limits_are_counted_in_redis_when_redis_is_configured():
    local = settings_values("CACHES", REDIS_URL=None)["CACHES"]
    assert local["limits"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    shared = settings_values("CACHES", REDIS_URL="redis://r:6379/3")["CACHES"]
    assert shared["limits"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert shared["limits"]["LOCATION"] == "redis://r:6379/3"
    # The models list stays in process memory, where a Redis outage cannot fail the page.
    assert shared["default"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


def test_no_mail_is_sent_without_a_mail_server():
    assert settings_values("EMAIL_BACKEND", EMAIL_HOST=None) == {
        "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend"}
    assert settings_values("EMAIL_BACKEND", "EMAIL_HOST", EMAIL_HOST="smtp.example.com") == {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "smtp.example.com"}


def test_other_providers_models_windows_and_vision_come_from_the_environment():
    values = settings_values(
        "MODEL_CONTEXT_WINDOWS", "VISION_MODELS", "VISION_MODEL",
        MODEL_CONTEXT_WINDOWS="llama3=8192, qwen2-vl=32768", VISION_MODELS="qwen2-vl", VISION_MODEL="qwen2-vl",
    )
    assert values["MODEL_CONTEXT_WINDOWS"] == {"llama3": 8192, "qwen2-vl": 32768}
    assert values["VISION_MODEL"] == "qwen2-vl" and "qwen2-vl" in values["VISION_MODELS"]


def test_a_window_that_is_not_name_equals_tokens_stops_the_start_with_a_sentence():
    result = settings_with(MODEL_CONTEXT_WINDOWS="llama3=8k")
    assert result.returncode != 0
    assert "MODEL_CONTEXT_WINDOWS: 'llama3=8k' is not name=tokens (e.g. llama3=8192)." in result.stderr
