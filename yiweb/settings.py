"""Settings, all read from the environment here and nowhere else.

Every variable has a default that works on one machine with no services: SQLite in
WAL mode, the in-memory channel layer, and (with no API key anywhere) the offline
simulator of the Yi API. The README's configuration table lists each name.
"""

import base64
import hashlib
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from yiweb.secret_key import key_file_load_or_create, secret_key_beside, secret_key_load_or_create, secret_key_weakness

BASE_DIR = Path(__file__).resolve().parent.parent

_DEV_SECRET_KEY = "dev-insecure-yiweb-secret-key-change-me"


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# Production unless told otherwise, so that the README's first command runs as deployed:
# the app's own error pages, hashed static files through WhiteNoise. DEBUG=1 is for
# development (Django's debug pages, static files straight from static/).
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "yiweb.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page's language: the one picked in the page (Django's language cookie, set by
    # the set_language view), else the browser's Accept-Language, else English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "yiweb.urls"
ASGI_APPLICATION = "yiweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Under ASGI every request may run in a different thread: persistent PostgreSQL
# connections would pile up one per thread, so each request opens its own. SQLite is
# the exception (below).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Without it a database that accepts the connection but never answers (frozen, or a
    # half-dead fail-over) holds every query, checkpoint and sweep without end.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = int(
        os.environ.get("DATABASE_CONNECT_TIMEOUT", "5")
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A SQLite "connection" is an open file, and opening one (with its PRAGMAs) cost 4 of
    # the 6.4 ms a send took; every websocket and generation query runs in one thread, so
    # 50 simultaneous sends queued for it. Keeping connections open costs nothing here.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # WAL lets the page read while a generation writes its checkpoint; the timeout
    # covers the short write lock a checkpoint holds.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("SQLITE_TEST_NAME", str(BASE_DIR / "test-db.sqlite3"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The secret key signs sessions and CSRF tokens. Unset, development uses a fixed key, and
# production on a SQLite file makes one on first start and keeps it beside the database
# (yiweb/secret_key.py); with PostgreSQL, processes may run on several machines, so each
# must be given the same key. Strength is judged by Django's own deploy check's rules.
SECRET_KEY = os.environ.get("SECRET_KEY", "")
SECRET_KEY_FILE: Path | None = None
_SECRET_KEY_EXAMPLE = "for example: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
if not SECRET_KEY and DEBUG:
    SECRET_KEY = _DEV_SECRET_KEY
elif not SECRET_KEY:
    _database = str(DATABASES["default"]["NAME"])
    if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" or _database in {"", ":memory:"}:
        raise ImproperlyConfigured(
            "DEBUG is off and the database is not a SQLite file, so SECRET_KEY must be set, to the same random "
            f"value of at least 50 characters in every process ({_SECRET_KEY_EXAMPLE}). DEBUG=1 runs development "
            "settings instead."
        )
    SECRET_KEY_FILE = secret_key_beside(Path(_database))
    SECRET_KEY = secret_key_load_or_create(SECRET_KEY_FILE)
elif not DEBUG and (_weakness := secret_key_weakness(SECRET_KEY)):
    raise ImproperlyConfigured(
        f"DEBUG is off, so SECRET_KEY must be a strong random value, and this one is not: {_weakness} "
        f"({_SECRET_KEY_EXAMPLE})."
    )

# The API keys people save are encrypted with these (chat/crypto.py): Fernet keys, newest
# first, comma-separated; the first encrypts, every one decrypts, so a new key can be put
# in front and `manage.py keys_reencrypt` run while the app serves. Unset: development
# derives one from SECRET_KEY (and warns), production on a SQLite file makes one on first
# start and keeps it beside the database, and production otherwise refuses to start.
ENCRYPTION_KEYS = [key.strip() for key in os.environ.get("ENCRYPTION_KEYS", "").split(",") if key.strip()]
ENCRYPTION_KEY_FILE: Path | None = None
if not ENCRYPTION_KEYS and not DEBUG:
    _database = str(DATABASES["default"]["NAME"])
    if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" or _database in {"", ":memory:"}:
        raise ImproperlyConfigured(
            "DEBUG is off and the database is not a SQLite file, so ENCRYPTION_KEYS must be set, to the same "
            "Fernet key in every process (for example: python -c 'import base64, os; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'). It encrypts the API keys people save."
        )
    ENCRYPTION_KEY_FILE = Path(_database).with_name(Path(_database).name + ".encryption-key")
    ENCRYPTION_KEYS = [key_file_load_or_create(
        ENCRYPTION_KEY_FILE, make=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(), what="ENCRYPTION_KEYS"
    )]

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    # The Pub/Sub layer: a group send is one PUBLISH and each process gets it pushed.
    # The list-based RedisChannelLayer writes one entry per group member and each process
    # polls one message per round trip; measured with two processes at 50 streams x 20 ms
    # it spent 4 CPU seconds per 1,000 deltas and, backed up, dropped 20,142 of 25,000.
    # chat.redis_layer: channels_redis's Pub/Sub layer, riding out Redis outages. The
    # timeouts keep a Redis that does not answer from holding a relay or a send for long.
    _REDIS_TIMEOUT = _env_float("REDIS_TIMEOUT", 5.0)
    # Redis Pub/Sub ignores the database number in REDIS_URL: two deployments on one Redis
    # server would hear (and stop) each other's answers. Every channel and group name
    # carries this prefix; by default it is derived from the database this deployment
    # uses, so deployments apart in PostgreSQL are apart in Redis too.
    _database = DATABASES["default"]
    CHANNEL_PREFIX = os.environ.get("CHANNEL_PREFIX") or "yiweb-{}-{}".format(
        "".join(c if c.isalnum() else "_" for c in Path(str(_database["NAME"])).name)[:24],
        hashlib.sha256("|".join(str(_database.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME")).encode())
        .hexdigest()[:8],
    )
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.redis_layer.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": REDIS_URL, "socket_connect_timeout": min(_REDIS_TIMEOUT, 2.0),
                     "socket_timeout": _REDIS_TIMEOUT}
                ],
                "prefix": CHANNEL_PREFIX + ".",
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in and sign-up limits (chat/account_throttle.py): failed sign-ins are counted per
# username and per client address over SIGNIN_PAUSE_MINUTES from the first; at a limit,
# sign-in is refused (without checking the password) until that time is up. 0: no limit.
SIGNIN_FAILURES_PER_ACCOUNT = int(os.environ.get("SIGNIN_FAILURES_PER_ACCOUNT", "5"))
SIGNIN_FAILURES_PER_ADDRESS = int(os.environ.get("SIGNIN_FAILURES_PER_ADDRESS", "20"))
SIGNIN_PAUSE_SECONDS = 60 * _env_float("SIGNIN_PAUSE_MINUTES", 15.0)
# Completed sign-up forms (an account made, or its name refused as taken) per address and
# hour: what bounds guessing which usernames exist.
SIGNUPS_PER_ADDRESS_PER_HOUR = int(os.environ.get("SIGNUPS_PER_ADDRESS_PER_HOUR", "10"))
# Behind a proxy every request comes from the proxy's address: name the header it puts the
# client's address in (its last entry is used, the one the nearest proxy wrote).
CLIENT_ADDRESS_HEADER = os.environ.get("CLIENT_ADDRESS_HEADER", "").strip()

# The limits' counts must be one count for all processes, so with Redis they are kept
# there. A cache of their own: the rest (the models list) stays in process memory, where
# a Redis outage cannot fail it; the limits ride an outage out by not counting.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "limits": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "limits"},
}
if REDIS_URL:
    CACHES["limits"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "yiweb-limits",
        "OPTIONS": {"socket_connect_timeout": 2.0, "socket_timeout": _env_float("REDIS_TIMEOUT", 5.0)},
    }

# Password reset mails a link, so it is offered only when a mail server is configured;
# without one no page tries to send mail.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", True)
    DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", f"yiweb@{EMAIL_HOST}")
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"

LANGUAGE_CODE = "en"
# The page's languages (templates, forms and static/chat's strings through the JavaScript
# catalog at /jsi18n/); the translations live in locale/, compiled .mo files included, so
# that the first command needs no gettext tools. The model's answers are never translated.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# A language picked in the page is kept for a year, not only until the browser closes.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# HTTPS=1: people reach this site over https:// (TLS ends in front of Daphne, at a proxy or
# a load balancer). Only then are cookies marked Secure, plain HTTP redirected and HSTS
# sent; on the first run, over plain http://127.0.0.1:8000, a browser would drop Secure
# cookies and nobody could sign in. With HTTPS=1, `manage.py check --deploy` is clean.
HTTPS = _env_bool("HTTPS", False)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = True
# The header by which the proxy in front says a request came over HTTPS, trusted only when
# named here: served directly, any client could send it. "X-Forwarded-Proto" means
# "X-Forwarded-Proto: https"; "Name: value" names another.
_SSL_HEADER = os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip()
if _SSL_HEADER:
    _name, _, _value = _SSL_HEADER.partition(":")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip() or "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: one line per generation is noise, not news.
    "loggers": {"httpx": {"level": "WARNING"}},
}

# --- yiweb ---------------------------------------------------------------------------

# With neither a key nor a base URL configured, the app talks to the offline simulator
# (chat/simulator.py) that `manage.py start` runs beside it, so a machine with no
# network can still chat end to end. The page says so.
YI_API_KEY = os.environ.get("YI_API_KEY", "")
SIMULATOR_PORT = int(os.environ.get("SIMULATOR_PORT", "8001"))
YI_SIMULATOR = not YI_API_KEY and "YI_API_BASE" not in os.environ
YI_API_BASE = os.environ.get(
    "YI_API_BASE", f"http://127.0.0.1:{SIMULATOR_PORT}/v1" if YI_SIMULATOR else "https://api.01.ai/v1"
).rstrip("/")
if YI_SIMULATOR:
    YI_API_KEY = "offline-simulator"
YI_DEFAULT_MODEL = os.environ.get("YI_DEFAULT_MODEL", "yi-large")
# The reference's usage tier of YI_API_KEY ("free", "1" to "5"), which paces its requests
# (chat/pacing.py); users' own keys have theirs on the Keys page. "none": not paced (a
# provider without the reference's limits), the default for the offline simulator.
YI_API_TIER = os.environ.get("YI_API_TIER", "none" if YI_SIMULATOR else "free").strip().lower()
if YI_API_TIER not in {"free", "1", "2", "3", "4", "5", "none"}:
    raise ImproperlyConfigured(f"YI_API_TIER is {YI_API_TIER!r}: it must be free, 1, 2, 3, 4, 5 or none.")
# Pacing (chat/pacing.py): each key's requests kept within its tier's requests and tokens
# per minute, a send over them waiting its turn in a queue the page shows. Off: every
# request goes at once, and a 429 is retried and then shown as an error.
PACING = _env_bool("PACING", True)
# The length of the tiers' "minute", in whole seconds. For tests only: they shorten it to
# a few seconds (the simulator reads it too, for SIMULATOR_RPM) to see a queue form and
# drain without waiting minutes.
PACING_WINDOW_SECONDS = int(os.environ.get("PACING_WINDOW_SECONDS", "60"))
# Whether people with no key of their own send with YI_API_KEY (chat/credentials.py). Off:
# each person must add a key on the Keys page first.
SERVER_KEY_FOR_ALL = _env_bool("SERVER_KEY_FOR_ALL", True)

SIGNUP_OPEN = _env_bool("SIGNUP_OPEN", True)
# Per person: answers being written at once, and messages sent in any minute
# (chat.limits.UserUsage); over either, a send is refused with a sentence that says so.
USER_ANSWERS_AT_ONCE = int(os.environ.get("USER_ANSWERS_AT_ONCE", "5"))
USER_SENDS_PER_MINUTE = int(os.environ.get("USER_SENDS_PER_MINUTE", "30"))
# A user message longer than this is refused with a clear error before anything is stored.
MESSAGE_MAX_CHARS = int(os.environ.get("MESSAGE_MAX_CHARS", "100000"))

# Upstream timing: retries before the first delta, and how long a silent stream may stall.
UPSTREAM_CONNECT_TIMEOUT = _env_float("UPSTREAM_CONNECT_TIMEOUT", 10.0)
UPSTREAM_STALL_TIMEOUT = _env_float("UPSTREAM_STALL_TIMEOUT", 60.0)
# Seconds the Keys page waits for `GET /models` when it checks a key being saved: a person
# is waiting at the form, so far less than a stream's stall timeout (chat/keys.py).
KEY_VERIFY_TIMEOUT = _env_float("KEY_VERIFY_TIMEOUT", 15.0)
UPSTREAM_MAX_RETRIES = int(os.environ.get("UPSTREAM_MAX_RETRIES", "3"))
UPSTREAM_RETRY_BASE = _env_float("UPSTREAM_RETRY_BASE", 1.0)
UPSTREAM_RETRY_MAX = _env_float("UPSTREAM_RETRY_MAX", 20.0)

# The partial answer is written to the database at most this often, not per delta.
CHECKPOINT_INTERVAL = _env_float("CHECKPOINT_INTERVAL", 1.0)
# About how many delta frames a process sends a second, all answers together: when more
# tokens arrive, each answer merges its tokens into fewer frames (chat/relay.py).
# Every frame is a system call per socket (docs/benchmarks.md); 0 sends each token at once.
RELAY_FRAMES_PER_SECOND = _env_float("RELAY_FRAMES_PER_SECOND", 6000.0)
# A websocket whose frames wait unsent past this many bytes (its reader does not read) is
# dropped, so that no client can make the server hold memory without end (yiweb/server.py).
WEBSOCKET_BUFFER_MAX_BYTES = int(os.environ.get("WEBSOCKET_BUFFER_MAX_BYTES", str(8 * 1024 * 1024)))
# A streaming answer whose process has not written for this long is marked interrupted
# (the process died); every process checks for such answers every half of this.
GENERATION_STALE_AFTER = _env_float("GENERATION_STALE_AFTER", 20.0)
# Whether answers are asked for as a stream. Off for an OpenAI-compatible server that
# cannot stream (some cannot stream tool calls): each answer then appears whole at its end.
STREAM_ANSWERS = _env_bool("STREAM_ANSWERS", True)
# Seconds one tool call may run (chat/tools) before its result says it timed out; under
# GENERATION_STALE_AFTER, so that a round's messages never look like a dead process's.
TOOL_TIMEOUT = _env_float("TOOL_TIMEOUT", 10.0)

# Uploaded images (chat/images.py): a larger file, or one declaring more pixels, is
# refused with a sentence before it is decoded.
IMAGE_MAX_BYTES = int(os.environ.get("IMAGE_MAX_BYTES", str(20_000_000)))
IMAGE_MAX_PIXELS = int(os.environ.get("IMAGE_MAX_PIXELS", str(50_000_000)))
# What is stored is what the model is sent (chat/images.py): a photo scaled to at most
# IMAGE_SEND_MAX_SIDE pixels on its longer side, stored as JPEG; a screenshot, a drawing or
# a picture with transparency to at most IMAGE_SEND_MAX_SIDE_SHARP, as PNG, so that a 4K
# screen's small text reaches the model whole.
IMAGE_SEND_MAX_SIDE = int(os.environ.get("IMAGE_SEND_MAX_SIDE", "2048"))
IMAGE_SEND_MAX_SIDE_SHARP = int(os.environ.get("IMAGE_SEND_MAX_SIDE_SHARP", "4096"))
# At most this many images in one message (the page says so before uploading a seventh).
IMAGES_PER_MESSAGE = int(os.environ.get("IMAGES_PER_MESSAGE", "6"))
# Processes that check and normalise uploads, at a lower priority than the server
# (chat/attachments.py): by default one core fewer than the machine has, at least one.
IMAGE_WORKERS = int(os.environ.get("IMAGE_WORKERS", str(max(1, (os.cpu_count() or 2) - 1))))

# Models and their windows (chat/catalog.py knows the reference's Yi models). A thread
# holding images, sent with the server's key (or a key to YI_API_BASE), is answered by
# VISION_MODEL when the picked model does not take images ("" refuses such sends instead);
# a key to another provider names its own on the Keys page. VISION_MODELS names more
# models that take images, and MODEL_CONTEXT_WINDOWS more windows
# ("name=tokens,name=tokens"), for other providers.
VISION_MODEL = os.environ.get("VISION_MODEL", "yi-vision").strip()
VISION_MODELS = frozenset(m.strip() for m in os.environ.get("VISION_MODELS", "").split(",") if m.strip())


def _windows(value: str) -> dict[str, int]:
    windows = {}
    for item in filter(str.strip, value.split(",")):
        name, _, tokens = item.partition("=")
        if not name.strip() or not tokens.strip().isdigit():
            raise ImproperlyConfigured(
                f"MODEL_CONTEXT_WINDOWS: {item.strip()!r} is not name=tokens (e.g. llama3=8192)."
            )
        windows[name.strip()] = int(tokens)
    return windows


MODEL_CONTEXT_WINDOWS = _windows(os.environ.get("MODEL_CONTEXT_WINDOWS", ""))
# Fitting a thread into its model's window (chat/requests.py): what one image is counted
# as, and the room kept for the answer when the send names no max_tokens.
IMAGE_TOKEN_COST = int(os.environ.get("IMAGE_TOKEN_COST", "1000"))
# The model asked for a conversation's title after its first answer ("": the model that
# answered; a cheap one saves tokens), chat/titles.py.
TITLE_MODEL = os.environ.get("TITLE_MODEL", "").strip()
ANSWER_TOKENS_RESERVED = int(os.environ.get("ANSWER_TOKENS_RESERVED", "1024"))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "media"))

# --- The page's safety net (docs/security.md) ----------------------------------------
# Every response carries a Content-Security-Policy (yiweb/csp.py, in MIDDLEWARE above),
# and every template knows MESSAGE_MAX_CHARS, which the chat page checks before sending.
TEMPLATES[0]["OPTIONS"]["context_processors"].append("yiweb.context_processors.limits")
# The person's theme, on <html> from the first byte (no flash of the other one).
TEMPLATES[0]["OPTIONS"]["context_processors"].append("yiweb.context_processors.theme")
