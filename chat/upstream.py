"""The Yi API (or any OpenAI-compatible API) over HTTP. The only module that imports httpx
(and aiohttp, its transport here).

It hands the rest of the app typed events from an async iterator and typed errors with
a sentence a person can act on; nothing outside this module sees HTTP.

Quirks of the Yi API handled here (see the reference in shared/seed):
- every stream chunk repeats the whole answer so far in a top-level `content` field and
  carries `lastOne`; we read only `choices[0].delta` and keep `content` as a way to
  recover text lost to a malformed chunk;
- the first chunk may carry only `{"role": "assistant"}` or an empty content delta;
- the reference's own vision streaming example contains a chunk that is not valid JSON
  (an extra `}`): it is skipped and logged, and the stream goes on;
- usage arrives in the last chunk, next to the finish reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import random
import re
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

logger = logging.getLogger(__name__)


# --- events --------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None


@dataclass(frozen=True)
class Finish:
    reason: str


@dataclass(frozen=True)
class Retrying:
    """Emitted before waiting to try again; only ever before the first delta."""

    attempt: int
    delay: float
    error: UpstreamError


Event = TextDelta | ToolCallDelta | Usage | Finish | Retrying


# --- errors --------------------------------------------------------------------------


class UpstreamError(Exception):
    """A failure talking to the upstream API, with a sentence for the person."""

    code = "upstream"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, detail: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class BadRequestError(UpstreamError):
    code = "bad_request"


class ContextLengthError(BadRequestError):
    code = "context_length"


class AuthError(UpstreamError):
    code = "auth"


class NotFoundError(UpstreamError):
    code = "not_found"


class NotAModelListError(NotFoundError):
    """`GET /models` answered 200 with something that is not an OpenAI-compatible model
    list (a web page, a login form, another API): the base URL is wrong."""

    code = "not_a_model_list"


class RateLimitError(UpstreamError):
    code = "rate_limited"
    retryable = True


class ServerError(UpstreamError):
    code = "server_error"
    retryable = True


class OverloadedError(UpstreamError):
    code = "overloaded"
    retryable = True


class ConnectionFailedError(UpstreamError):
    code = "connection"
    retryable = True


class TimeoutError_(UpstreamError):
    code = "timeout"
    retryable = True


class StreamCutError(UpstreamError):
    code = "stream_cut"
    SENTENCE = "The connection to the model's API closed mid-answer. The text so far is kept; try again."


class StalledError(UpstreamError):
    code = "stalled"


# What a key looks like when an upstream (or a proxy in front of it) echoes a request back
# in its error: an Authorization header, a bearer token, an `sk-` key, or any long unbroken
# run of key characters. Masked before the text is shown, stored or logged.
_SECRET_PATTERNS = re.compile(
    r"(?i)(authorization\s*[:=]\s*)?\bbearer\s+[\w.~+/=-]+"
    r"|(?i:authorization)\s*[:=]\s*\S+"
    r"|\bsk-[\w-]{6,}"
    r"|(?<![\w-])[A-Za-z0-9_\-]{32,}(?![\w-])"
)
SECRET_MASK = "[hidden]"


def secret_mask(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """`text` quoted from upstream with every key-like string (and each of `secrets`) masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, SECRET_MASK)
    return _SECRET_PATTERNS.sub(SECRET_MASK, text)


def _detail(response_body: bytes, *, api_key: str = "") -> str:
    """The upstream's own explanation, if its error body has one (the reference gives no
    shape), with anything key-like masked."""
    text = response_body[:20_000].decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("msg") or error.get("detail") or "")
        elif isinstance(error, str):
            text = error
    # Masked before it is cut: a key cut in half would not match.
    return secret_mask(" ".join(text.split()), secrets=(api_key,))[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value)
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


# How OpenAI-compatible servers word "input + max_tokens exceed the context window"
# (the reference gives no body); a plain "max_tokens must be positive" is a format error.
_CONTEXT_WORDS = ("context", "too long", "exceed", "must be <=", "maximum length", "max_new_tokens")


def error_from_response(
    status: int, body: bytes, headers: httpx.Headers, *, credential: Credential, model: str = ""
) -> UpstreamError:
    """Map an HTTP error answer to the typed error and the sentence the page shows, which
    names the provider and the key by its label (never the key)."""
    detail = _detail(body, api_key=credential.api_key)
    provider = credential.provider
    retry_after = _retry_after(headers.get("retry-after"))
    said = f" The API said: “{detail}”" if detail else ""
    kwargs = {"status": status, "detail": detail, "retry_after": retry_after}
    if status == 400:
        if any(word in detail.lower() for word in _CONTEXT_WORDS):
            return ContextLengthError(
                "This conversation is too long for the model's context window (400). Start a new "
                "conversation, shorten your message, or lower max_tokens." + said,
                **kwargs,
            )
        return BadRequestError(
            f"{provider} rejected the request as malformed (400). Check the model name (all lowercase, "
            "for example yi-large) and the parameters." + said,
            **kwargs,
        )
    if status in (401, 403):
        return AuthError(
            f"{provider} rejected {credential.key_named} ({status}): it is missing, wrong or disabled. "
            + credential.key_advice,
            **kwargs,
        )
    if status == 404:
        return NotFoundError(
            f"{provider} does not know the model “{model}” or the endpoint (404). Pick another model, "
            + credential.base_url_advice,
            **kwargs,
        )
    if status == 429:
        return RateLimitError(
            f"{provider} is rate-limiting {credential.key_named} (429): too many requests or tokens per "
            "minute. Wait a minute and try again, or move to a higher usage tier.",
            **kwargs,
        )
    if status == 529:
        return OverloadedError(
            f"{provider} is overloaded right now (529: system busy). Try again in a moment.", **kwargs
        )
    if status >= 500:
        return ServerError(
            f"{provider} had an internal error ({status}). Try again in a moment; if it keeps "
            "happening, the service may be down.",
            **kwargs,
        )
    return UpstreamError(f"{provider} refused the request ({status}).{said}", **kwargs)


# --- the client ----------------------------------------------------------------------

# One connection pool per event loop and provider (base URL): an httpx.AsyncClient belongs
# to the loop it was first used on (tests run several loops in one process), and each
# provider may need its own proxy. Keys are per request, never per pool.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = weakref.WeakKeyDictionary()


def _pool(*, base_url: str, connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    pool = pools.get(base_url)
    if pool is None or pool.is_closed:
        pool = httpx.AsyncClient(
            # httpx's API over aiohttp's connections: aiohttp parses HTTP in C. Reading a
            # stream chunk took 15 µs of CPU this way against 40 µs through httpcore, at
            # 50 streams of 500 chunks a second (docs/benchmarks.md).
            transport=AiohttpTransport(client=functools.partial(_aiohttp_session, proxy_for(base_url))),
            timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=connect_timeout),
        )
        pools[base_url] = pool
    return pool


def _aiohttp_session(proxy: str | None) -> aiohttp.ClientSession:
    # limit=0: streams stay open for minutes, so the pool holds one connection per
    # concurrent generation; aiohttp's default of 100 would queue the 101st. Certificates
    # as httpx would use them; proxy variables read once, as httpx reads them once per
    # client. (aiohttp's trust_env reads them, and ~/.netrc, in a worker thread on every
    # request: two thread hops before each answer starts. In one run at 50 streams the
    # first token came 39 ms after its generation started with them, 21 ms without.)
    connector = aiohttp.TCPConnector(limit=0, ssl=httpx.create_ssl_context())
    return aiohttp.ClientSession(connector=connector, proxy=proxy)


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) sets for `url`, if any."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def pool_close() -> None:
    """Close this event loop's connections (tests end a loop per test)."""
    for pool in _pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.aclose()


# Hosts of 01.AI's own API: errors from them are "the Yi API's".
YI_HOSTS = ("api.01.ai", "api.lingyiwanwu.com")
# OpenAI-compatible APIs (OpenAI, vLLM, Ollama) stream usage only when asked, in one more
# chunk with empty `choices`. The Yi API sends it unasked with the finish, and its
# reference does not name `stream_options`: it is not sent to 01.AI's hosts, where an API
# that checks its parameters could answer 400. Everywhere else it is, the server's own key
# too (YI_API_BASE may name vLLM; the offline simulator ignores it).
STREAM_USAGE_ASKED = {"stream_options": {"include_usage": True}}
# Base URLs that refused `stream_options` (an older or stricter server: "Unrecognized
# request argument", a 422 for an extra field): asked without it from then on, in this
# process, their answers stored without usage rather than failing.
_stream_options_refused: set[str] = set()


@dataclass(frozen=True)
class Credential:
    """Who a request upstream is made as: a provider's base URL and a key, and how pages
    and error sentences name them. Resolved per send (chat/credentials.py); the key is
    left out of repr, so a log line or a traceback that shows the object does not show it."""

    base_url: str
    api_key: str = field(repr=False)
    label: str = ""  # the key's label; "" for the server's own key
    key_id: int | None = None  # the ApiKey row; None for the server's key
    tier: str = "free"
    yi: bool = False  # the provider is the Yi API (the server's configured one, or a Yi host)

    @property
    def host(self) -> str:
        return httpx.URL(self.base_url).host

    @property
    def is_yi(self) -> bool:
        return self.yi or self.host in YI_HOSTS

    @property
    def provider(self) -> str:
        return "The Yi API" if self.is_yi else f"The API at {self.host}"

    @property
    def usage_asked(self) -> bool:
        """Whether a stream asks for usage with `stream_options` (see STREAM_USAGE_ASKED)."""
        return self.host not in YI_HOSTS

    @property
    def key_named(self) -> str:
        return f"the key “{self.label}”" if self.key_id is not None else "the server's API key"

    @property
    def key_advice(self) -> str:
        if self.key_id is not None:
            return "Check it on the Keys page, or pick another key for this conversation."
        return "Add a key of your own on the Keys page, or ask the administrator to check the server's key."

    @property
    def base_url_advice(self) -> str:
        if self.key_id is not None:
            return f"or check on the Keys page that the base URL of the key “{self.label}” ends in /v1."
        return "or ask the administrator to check that the server's base URL ends in /v1."

    @property
    def cache_id(self) -> str:
        """A name for per-credential caches and limits (the models list, pacing): never the key."""
        return f"key{self.key_id}" if self.key_id is not None else "server"


@dataclass
class YiClient:
    credential: Credential
    connect_timeout: float = 10.0
    # A stream that sends nothing for this long is given up as stalled.
    stall_timeout: float = 60.0
    max_retries: int = 3
    retry_base: float = 1.0
    retry_max: float = 20.0
    # Told of every 429, with its Retry-After (None without one), before the client waits
    # or gives up: pacing holds the key's other requests back (chat/pacing.py).
    rate_limited: Callable[[float | None], Awaitable[None]] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return self.credential.base_url

    def _client(self) -> httpx.AsyncClient:
        return _pool(base_url=self.base_url, connect_timeout=self.connect_timeout, read_timeout=self.stall_timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential.api_key}", "Content-Type": "application/json"}

    def _url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"

    async def list_models(self) -> list[dict[str, Any]]:
        """`GET /models`: the models this key may use, as the API lists them."""
        try:
            response = await self._client().get(self._url("models"), headers=self._headers())
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            raise error_from_response(response.status_code, response.content, response.headers, credential=self.credential)
        try:
            data = response.json()
        except ValueError:
            data = None
        listed = data.get("data") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise NotAModelListError(
                f"{self._named_at()} answered, but not with an OpenAI-compatible list of models. "
                + "C" + self.credential.base_url_advice.removeprefix("or c"),
                status=response.status_code,
            )
        return [m for m in listed if isinstance(m, dict) and m.get("id")]

    async def reply(self, body: dict[str, Any]) -> AsyncIterator[Event]:
        """`POST /chat/completions` without streaming, as the events a stream would give
        (for providers that cannot stream, STREAM_ANSWERS off): all at once, at the end."""
        for event in reply_events(await self.complete(body)):
            yield event

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /chat/completions` without streaming: the chat.completion object."""
        try:
            response = await self._client().post(
                self._url("chat/completions"), headers=self._headers(), json={**body, "stream": False}
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code != 200:
            error = error_from_response(
                response.status_code, response.content, response.headers, model=body.get("model", ""),
                credential=self.credential,
            )
            await self._note_rate_limited(error)
            raise error
        return response.json()

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[Event]:
        """`POST /chat/completions` with `stream: true`, as typed events.

        Errors before the first delta that are worth retrying (429, 500, 529, a refused or
        timed-out connection) are retried with exponential backoff and full jitter,
        honouring Retry-After; each wait is announced with a `Retrying` event. Once a delta
        has been handed on, nothing is retried: the caller decides what to do with the
        partial answer.
        """
        attempt = 0
        while True:
            started = False
            try:
                # The stream is read here rather than in a generator of its own: at 50
                # streams every event passes through this loop 25,000 times a second, and
                # each generator layer costs a resumption per event.
                async with self._stream_response(body) as (response, watch):
                    decoder = StreamDecoder()
                    clock = asyncio.get_running_loop().time
                    # Raw bytes unless the API compressed them: one layer less per chunk.
                    encoded = response.headers.get("content-encoding", "identity") != "identity"
                    async for data in response.aiter_bytes() if encoded else response.aiter_raw():
                        watch.last = None  # handing events on: what the caller takes is not silence
                        for event in decoder.feed(data):
                            started = True
                            yield event
                        if decoder.done:
                            break
                        watch.last = clock()
                    if watch.stalled:  # the watch closed the response: the body just ended
                        raise self._stalled()
                    for event in decoder.close():
                        yield event
                return
            except UpstreamError as error:
                if not started and self._stream_options_refused(error):
                    continue
                await self._note_rate_limited(error)
                if started or not error.retryable or attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt, error.retry_after)
                if delay is None:
                    raise
                attempt += 1
                yield Retrying(attempt=attempt, delay=delay, error=error)
                await asyncio.sleep(delay)

    def _usage_asked(self) -> bool:
        return self.credential.usage_asked and self.base_url not in _stream_options_refused

    def _stream_options_refused(self, error: UpstreamError) -> bool:
        """True, the first time, for a request refused because of `stream_options`: it is
        sent again without (and from then on)."""
        if error.status not in (400, 422) or "stream_options" not in error.detail or not self._usage_asked():
            return False
        logger.info("%s refused stream_options: asked without it from now on", self.credential.host)
        _stream_options_refused.add(self.base_url)
        return True

    async def _note_rate_limited(self, error: UpstreamError) -> None:
        if isinstance(error, RateLimitError) and self.rate_limited is not None:
            await self.rate_limited(error.retry_after)

    def _backoff(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            # Waiting longer than we would ever back off is worse than telling the person.
            return retry_after if retry_after <= self.retry_max else None
        return random.uniform(0, min(self.retry_max, self.retry_base * 2**attempt))

    @contextlib.asynccontextmanager
    async def _stream_response(self, body: dict[str, Any]) -> AsyncIterator[tuple[httpx.Response, _StallWatch]]:
        """The 200 response to a streaming request and the watch on its silence; httpx's
        errors, while it is read, as ours.

        The answer must begin within the stall timeout, and then never go quiet for that
        long. httpx's read timeout did both, but through aiohttp it moved a timer on every
        chunk that arrived (25,000 a second at 50 streams): the body is watched by a
        `_StallWatch` instead, and only the wait for the answer to begin is timed."""
        client = self._client()
        request = client.build_request(
            "POST",
            self._url("chat/completions"),
            headers=self._headers(),
            json={**body, "stream": True, **(STREAM_USAGE_ASKED if self._usage_asked() else {})},
            timeout=httpx.Timeout(**(client.timeout.as_dict() | {"read": None})),
        )
        try:
            async with asyncio.timeout(self.stall_timeout):
                response = await client.send(request, stream=True)
        except TimeoutError as exc:
            raise self._timed_out() from exc
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        watch = _StallWatch(response, self.stall_timeout)
        try:
            if response.status_code != 200:
                raise error_from_response(
                    response.status_code, await response.aread(), response.headers, model=body.get("model", ""),
                    credential=self.credential,
                )
            yield response, watch
        except httpx.TransportError as exc:
            raise (self._stalled() if watch.stalled else StreamCutError(StreamCutError.SENTENCE)) from exc
        finally:
            watch.stop()
            await response.aclose()

    def _stalled(self) -> StalledError:
        return StalledError(
            f"{self.credential.provider} sent nothing for {self.stall_timeout:g} seconds, so the answer was given up. "
            "The text so far is kept."
        )

    def _named_at(self) -> str:
        """"The Yi API at api.01.ai", "The API at example.com": where the request went."""
        provider = self.credential.provider
        return provider if " at " in provider else f"{provider} at {self.credential.host}"

    def _timed_out(self) -> TimeoutError_:
        return TimeoutError_(
            f"{self._named_at()} did not answer in time. Check your network and the key's base URL, and try again."
        )

    def _transport_error(self, exc: httpx.HTTPError) -> UpstreamError:
        # httpx-aiohttp reports a refused connection as ConnectTimeout: aiohttp's own
        # error, when there is one, says which it was.
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError | TimeoutError):
            timed_out = isinstance(cause, TimeoutError)
        else:
            timed_out = isinstance(exc, httpx.TimeoutException)
        if timed_out:
            return self._timed_out()
        return ConnectionFailedError(
            f"Could not connect to {self._named_at()[0].lower()}{self._named_at()[1:]} ({type(exc).__name__}). "
            "Check your network and the key's base URL, then try again."
        )


class _StallWatch:
    """Closes a streamed response once nothing has arrived for `timeout` seconds.

    The reader stamps `last` with the loop's clock when it starts waiting for the next
    chunk, and sets it to None while it hands a chunk's events on (however long its caller
    takes over them, that is not the API's silence). One task per stream sleeps until
    `last` would be `timeout` old and looks again, so a flowing stream wakes it about once
    per `timeout`. Once it has closed the response, `stalled` tells the reader why its
    body ended."""

    def __init__(self, response: httpx.Response, timeout: float):
        self._loop = asyncio.get_running_loop()
        self.last: float | None = self._loop.time()
        self.stalled = False
        self._task = self._loop.create_task(self._watch(response, timeout))

    async def _watch(self, response: httpx.Response, timeout: float) -> None:
        while True:
            last = self.last
            left = timeout if last is None else last + timeout - self._loop.time()
            if left <= 0:
                break
            await asyncio.sleep(left)
        self.stalled = True
        await response.aclose()

    def stop(self) -> None:
        self._task.cancel()


# `"choices"` as a key: an unescaped quote cannot occur inside a JSON string, so this
# only matches where a key starts (the Yi API sends it before the long `content`).
_CHOICES_KEY = re.compile(r'"choices"\s*:\s*')
_json_value = json.JSONDecoder().raw_decode
# A piece of text exactly as the Yi API sends it, free of escapes and of the control
# characters JSON does not allow raw (those go to the parser, as before). Matched only at
# the first "choices" key (see `StreamDecoder._plain_delta`).
_PLAIN_DELTA = re.compile(rb'"choices":\[\{"delta":\{"content":"([^"\\\x00-\x1f]*)"\},"index":0\}\]')


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Longer than any finish reason the reference or OpenAI names ("content_filter" is 14),
# and what the database keeps of one.
FINISH_REASON_MAX = 32


def _whole_number(value: Any) -> int | None:
    """`value` if it is a whole number a column can hold (a usage figure, a tool call's
    index); None for anything else (a string, a bool, a negative or fractional number)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def _storable(text: str) -> str:
    """The model's text without what cannot be stored: NUL characters (PostgreSQL refuses
    them; a page shows nothing for them) and halves of surrogate pairs (JSON can carry
    them; UTF-8 cannot), which become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _tool_call_deltas(calls: Any) -> list[ToolCallDelta]:
    """The tool-call deltas of a chunk, as OpenAI's format has them; what does not fit it
    (a call that is not an object, fields of other types) is dropped rather than failing
    the answer."""
    deltas = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):  # an object where a JSON string belongs
            arguments = json.dumps(arguments, ensure_ascii=False)
        deltas.append(
            ToolCallDelta(
                index=_call_index(call.get("index")),
                id=_text_field(call.get("id")),
                name=_text_field(function.get("name")),
                arguments=_text_field(arguments),
            )
        )
    return deltas


def _call_index(value: Any) -> int:
    """The index that keys the calls being merged: a whole number (or its digits), else 0."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return _whole_number(value) or 0


def _text_field(value: Any) -> str:
    return _storable(value) if isinstance(value, str) else ""


def reply_events(reply: Any) -> list[Event]:
    """The events of a non-stream reply (a chat.completion object), as a stream would have
    given them: its text, its tool calls, its usage and how it finished. Only
    `choices[0].message` and `usage` are relied on (the reference's vision replies lack
    `id` and `object`); a reply of another shape is an error with a sentence."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice else None
    if not isinstance(message, dict):
        raise UpstreamError("The API answered, but not with a chat completion. The answer could not be read.")
    events: list[Event] = []
    if text := _text_field(message.get("content")):
        events.append(TextDelta(text))
    events += [
        ToolCallDelta(index=i, id=d.id, name=d.name, arguments=d.arguments)
        for i, d in enumerate(_tool_call_deltas(message.get("tool_calls")))
    ]
    usage = reply.get("usage")
    if isinstance(usage, dict):
        events.append(Usage(*(_whole_number(usage.get(key)) for key in USAGE_KEYS)))
    if choice.get("finish_reason"):
        events.append(Finish(reason=_storable(str(choice["finish_reason"]))[:FINISH_REASON_MAX]))
    return events


class StreamDecoder:
    """The events of a chat completion event stream, fed its body as it arrives.

    Plain synchronous code on purpose: at 50 streams of 500 tokens a second it runs
    25,000 times a second, and an async generator per line cost more than the parsing
    (docs/benchmarks.md).
    """

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose end has not arrived
        self.done = False  # `data: [DONE]` seen: nothing after it matters
        self.finished = False
        self.text_so_far: list[str] = []
        self.length = 0
        self.lost_text = False  # a malformed chunk was skipped; the next `content` field can repair it

    def feed(self, data: bytes) -> list[Event]:
        if self.pending:
            data = self.pending + data
        events: list[Event] = []
        start = 0
        # find() rather than split(): each line is copied once, when it is a data line.
        while (end := data.find(b"\n", start)) != -1:
            if data.startswith(b"data:", start) and not self.done:
                first, last = start + 5, end
                if data[first : first + 1] == b" ":  # SSE drops one space after the colon
                    first += 1
                if data[last - 1 : last] == b"\r":
                    last -= 1
                if not self._plain_delta(data, first, last, events):
                    self._data(data[first:last], events)
            start = end + 1
        self.pending = data[start:]
        return events

    def _plain_delta(self, data: bytes, first: int, last: int, events: list[Event]) -> bool:
        """The text of the data line `data[first:last]` if it is a piece of text exactly as
        the Yi API sends one, read without parsing the chunk; False for any other line,
        which `_data` then parses.

        Almost every chunk of a Yi answer is such a piece. Text with an escape in it
        (a quote, a backslash, a control character), a finish, tool calls, a role, or
        choices shaped any other way (OpenAI's) all fail the match. The Yi API sends usage
        only with the finish, so a plain piece carries none. A chunk of a 500-token
        answer took 5.7–5.8 µs of CPU parsed and takes 2.9–3.1 µs this way; a piece that
        needs an escape costs 0.6–0.9 µs more than before (`bench/decode.py`). At 50
        streams, 25,000 chunks a second, the relay's per-token p99 fell from 48–58 to
        36–37 ms on a slow day (docs/benchmarks.md)."""
        if self.lost_text:
            return False
        # Only at the first "choices", the one `_chunk_parse` would read: further on, the
        # shape can be inside the answer so far, which the Yi API does not always escape.
        key = data.find(b'"choices"', first, last)
        match = None if key == -1 else _PLAIN_DELTA.match(data, key, last)
        if match is None:
            return False
        try:
            piece = match[1].decode()
        except UnicodeDecodeError:
            return False
        self._piece(piece, events)
        return True

    def _piece(self, piece: str, events: list[Event]) -> None:
        if piece:
            self.text_so_far.append(piece)
            self.length += len(piece)
            events.append(TextDelta(piece))

    def close(self) -> list[Event]:
        """The body has ended: the events of an unterminated last line, or a cut stream."""
        events = self.feed(b"\n") if self.pending else []
        if self.done or self.finished:
            return events
        raise StreamCutError(StreamCutError.SENTENCE)

    def _data(self, payload: bytes, events: list[Event]) -> None:
        if payload == b"[DONE]":
            self.done = True
            if not self.finished:
                events.append(Finish(reason=""))
            return
        try:
            chunk, choice = self._chunk_parse(payload)
            delta = choice.get("delta") or {}
            piece = _storable(delta.get("content") or "")
        except (ValueError, AttributeError, IndexError, KeyError, TypeError):
            logger.warning("skipped a malformed stream chunk: %.200r", payload)
            self.lost_text = True
            return

        if self.lost_text:
            accumulated = chunk.get("content")
            if isinstance(accumulated, str) and _storable(accumulated).startswith("".join(self.text_so_far)):
                # The Yi API repeats the whole answer so far in every chunk: whatever the
                # skipped chunk carried is the difference.
                piece = _storable(accumulated)[self.length :]
                self.lost_text = False
        self._piece(piece, events)
        events.extend(_tool_call_deltas(delta.get("tool_calls")))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            events.append(Usage(*(_whole_number(usage.get(key)) for key in USAGE_KEYS)))
        if choice.get("finish_reason"):
            self.finished = True
            events.append(Finish(reason=_storable(str(choice["finish_reason"]))[:FINISH_REASON_MAX]))

    def _chunk_parse(self, payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """The chunk (only its `choices` where that is all a delta needs) and its first choice.

        Every Yi chunk repeats the whole answer so far, ~11 KB by the 500th token, and
        parsing it was most of the cost of a stream: an ordinary delta is read from
        `choices` alone. The whole chunk is parsed when its other fields matter: the
        finish (the Yi API sends usage with it), a chunk without choices (OpenAI's usage
        chunk), or text to recover."""
        text = payload.decode()
        key = None if self.lost_text else _CHOICES_KEY.search(text)
        choices_only = None
        if key is not None:
            choices = _json_value(text, key.end())[0]
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                choices_only = {"choices": choices}, choices[0]
                if not choices[0].get("finish_reason"):
                    return choices_only
        try:
            chunk = json.loads(text)
        except ValueError:
            if choices_only is None:
                raise
            # The answer so far, which the Yi API does not always escape, can make the
            # whole chunk invalid; its choices still say how the answer ended.
            return choices_only
        return chunk, (chunk.get("choices") or [{}])[0]
