"""The Yi API (or any OpenAI-compatible API) over HTTP: the client, made per credential, and
its connection pools. The only module that imports httpx (and aiohttp, its transport here).

It hands the rest of the app typed events from an async iterator (chat/upstream_events.py
reads them from the API's bytes) and typed errors with a sentence a person can act on
(chat/upstream_errors.py); nothing outside these modules sees HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from chat.sentences import Sentence, sentence
from chat.upstream_errors import (
    ConnectionFailedError,
    NotAModelListError,
    RateLimitError,
    StalledError,
    StreamCutError,
    TimeoutError_,
    UpstreamError,
    error_from_response,
)
from chat.upstream_events import Event, Retrying, StreamDecoder, reply_events

logger = logging.getLogger(__name__)


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
    images_model: str = ""  # the key's "Model for images" (chat/catalog.py); "" where it names none

    @property
    def host(self) -> str:
        return httpx.URL(self.base_url).host

    @property
    def is_yi(self) -> bool:
        return self.yi or self.host in YI_HOSTS

    @property
    def provider(self) -> Sentence:
        """How error sentences name the provider (chat/sentences.py)."""
        return sentence("provider_yi") if self.is_yi else sentence("provider_at", host=self.host)

    @property
    def untiered(self) -> bool:
        """Its tier is "No limit (self-hosted)" (ApiKey.Tier.NONE, chat/pacing.py's UNPACED):
        no usage tier above it would lift a limit it meets."""
        return self.tier == "none"

    @property
    def address(self) -> str:
        """The host, and the port where the base URL names one: a refused connection is
        about the port as much as the host (localhost:8001 against localhost:8000)."""
        url = httpx.URL(self.base_url)
        return f"{url.host}:{url.port}" if url.port is not None else url.host

    @property
    def usage_asked(self) -> bool:
        """Whether a stream asks for usage with `stream_options` (see STREAM_USAGE_ASKED)."""
        return self.host not in YI_HOSTS

    def provider_at(self, *, inline: bool = False, port: bool = False) -> Sentence:
        """The provider and where the request went: "The Yi API at api.01.ai" (with the
        base URL's port too, `port`)."""
        host = self.address if port else self.host
        if self.is_yi:
            return sentence("provider_yi_at_inline" if inline else "provider_yi_at", host=host)
        return sentence("provider_at_inline" if inline else "provider_at", host=host)

    @property
    def key_named(self) -> Sentence:
        return sentence("key_own", label=self.label) if self.key_id is not None else sentence("key_server")

    @property
    def key_advice(self) -> Sentence:
        return sentence("key_advice_own" if self.key_id is not None else "key_advice_server")

    @property
    def base_url_advice(self) -> Sentence:
        if self.key_id is not None:
            return sentence("base_url_advice_own", label=self.label)
        return sentence("base_url_advice_server")

    @property
    def base_url_check(self) -> Sentence:
        """`base_url_advice` as a sentence of its own."""
        if self.key_id is not None:
            return sentence("base_url_check_own", label=self.label)
        return sentence("base_url_check_server")

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
                sentence("not_a_model_list", provider=self.credential.provider_at(),
                         advice=self.credential.base_url_check),
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
            raise (self._stalled() if watch.stalled else StreamCutError()) from exc
        finally:
            watch.stop()
            await response.aclose()

    def _stalled(self) -> StalledError:
        return StalledError(sentence("stalled", provider=self.credential.provider, seconds=f"{self.stall_timeout:g}"))

    def _timed_out(self) -> TimeoutError_:
        provider = self.credential.provider_at()
        return TimeoutError_(sentence("timeout", provider=provider),
                             retry_reason=sentence("retry_timeout", provider=provider))

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
        credential = self.credential
        os_error = getattr(cause, "os_error", None)
        if isinstance(os_error, ConnectionRefusedError):
            provider = credential.provider_at(port=True)
            final, reason = "connection_refused", "retry_refused"
        else:
            provider = credential.provider_at(inline=True, port=True)
            if isinstance(cause, aiohttp.ClientConnectorDNSError):
                final, reason = "host_unknown", "retry_host_unknown"
            else:
                final, reason = "connection_failed", "retry_connection"
        return ConnectionFailedError(sentence(final, provider=provider),
                                     retry_reason=sentence(reason, provider=provider))


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
