"""Pacing: each credential's requests upstream kept inside its usage tier, in every process.

The reference's usage tiers allow a key so many requests (RPM) and tokens (TPM) a minute;
Free allows 4 requests, which one person meets within a minute of normal use and many
people behind the server's key within seconds. Instead of being sent to earn a 429, a
request waits its turn here, and the page shows the wait ("Queued: starts in 12 s (2nd in
line)", a `queued` frame).

- The counting is the `limits` library's, in Redis when REDIS_URL is set, so that every
  process counts against one window per key, else in this process's memory. Requests: a
  moving window (exact: the times of the last RPM requests). Tokens: a sliding-window
  counter, since a moving window keeps one list entry per unit counted (400,000 entries
  for a Tier 5 key).
- A request's tokens (`request_tokens`) are the estimate of its prompt plus its
  `max_tokens`, or ANSWER_TOKENS_RESERVED when it names none: the answer counts too and is
  not known before it ends. At most the tier's TPM, so that one huge request waits for an
  empty window instead of for ever.
- Within a process the requests waiting on a key form a line, first come first served;
  only its head asks the shared window, so a position is a place in this process's line
  (between processes the window decides who goes first).
- A minute is counted as PACING_WINDOW_SECONDS + WINDOW_MARGIN: the provider counts a
  request when it arrives, and one that travels a little faster than the one it replaces
  in the window would otherwise be the one over the limit.
- A 429 that still comes back (another program using the same key, a provider whose
  limits are not the table's) holds the key's requests back for the Retry-After the API
  asked for, or for one request's share of the window when it named none, in the same
  storage, so that every process holds back (`pacing_slow_down`).
- While Redis does not answer, requests go unpaced rather than wait on it (chat/outages.py
  says so once per outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from chat.outages import Outage
from chat.requests import MESSAGE_OVERHEAD_TOKENS, tokens_estimate
from chat.upstream import Credential


@dataclass(frozen=True)
class Tier:
    rpm: int
    tpm: int


# The reference's "Usage Tiers and Rate Limits" table.
TIERS = {
    "free": Tier(rpm=4, tpm=32_000),
    "1": Tier(rpm=10, tpm=80_000),
    "2": Tier(rpm=40, tpm=120_000),
    "3": Tier(rpm=120, tpm=160_000),
    "4": Tier(rpm=120, tpm=240_000),
    "5": Tier(rpm=200, tpm=400_000),
}
# A credential of this tier is not paced (a self-hosted server, the offline simulator).
UNPACED = "none"
WINDOW_MARGIN = 1  # seconds added to the provider's window, see the module's doc

# Called while a request waits: (its place in this process's line, from 1; about how many
# seconds until it goes). Called when it starts waiting and when either changes.
OnQueued = Callable[[int, float], Awaitable[None]]

storage_outage = Outage("the pacing storage (Redis)")


def tier_of(name: str) -> Tier | None:
    """The limits of a tier by its name ("free", "1" to "5"); None for UNPACED. An unknown
    name is paced as Free, the reference's default."""
    if name == UNPACED:
        return None
    return TIERS.get(name, TIERS["free"])


def window_seconds() -> int:
    return settings.PACING_WINDOW_SECONDS + WINDOW_MARGIN


def request_tokens(body: dict[str, Any]) -> int:
    """What a chat request counts against TPM: its prompt (`prompt_tokens`) plus room for
    the answer (its max_tokens, else ANSWER_TOKENS_RESERVED)."""
    return prompt_tokens(body) + (body.get("max_tokens") or settings.ANSWER_TOKENS_RESERVED)


def prompt_tokens(body: dict[str, Any]) -> int:
    """A chat request's prompt by the same estimate that fits it into the model's window
    (chat/requests.py), IMAGE_TOKEN_COST an image. Also what an answer that ended without
    the upstream's usage stores as its prompt (chat/endings.py `usage_estimate`)."""
    tokens = 0
    for message in body.get("messages", ()):
        tokens += MESSAGE_OVERHEAD_TOKENS
        content = message.get("content") or ""
        if isinstance(content, str):
            tokens += tokens_estimate(content)
        else:
            for part in content:
                is_image = part.get("type") == "image_url"
                tokens += settings.IMAGE_TOKEN_COST if is_image else tokens_estimate(part.get("text") or "")
        if message.get("tool_calls"):
            tokens += tokens_estimate(str(message["tool_calls"]))
    return tokens


# --- the shared counts -----------------------------------------------------------------


@dataclass
class _Counts:
    """The storage (one per event loop: a Redis connection belongs to the loop that made
    it) and the two strategies over it."""

    config: tuple[str, str]
    storage: Any
    requests: MovingWindowRateLimiter
    tokens: SlidingWindowCounterRateLimiter


_counts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Counts] = weakref.WeakKeyDictionary()


def _storage_config() -> tuple[str, str]:
    url = settings.REDIS_URL
    if not url:
        return "async+memory://", ""
    uri = "async+redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else "async+" + url
    # Beside the channel layer's names, which are apart per deployment (settings.CHANNEL_PREFIX).
    return uri, f"{getattr(settings, 'CHANNEL_PREFIX', 'yiweb')}.pacing"


def _counts_here() -> _Counts:
    loop = asyncio.get_running_loop()
    config = _storage_config()
    counts = _counts.get(loop)
    if counts is None or counts.config != config:
        uri, prefix = config
        options: dict[str, Any] = {"wrap_exceptions": True}
        if prefix:
            options.update(implementation="redispy", key_prefix=prefix, socket_connect_timeout=2.0, socket_timeout=2.0)
        storage = storage_from_string(uri, **options)
        counts = _Counts(config, storage, MovingWindowRateLimiter(storage), SlidingWindowCounterRateLimiter(storage))
        _counts[loop] = counts
    return counts


def _items(tier: Tier) -> tuple[RateLimitItemPerSecond, RateLimitItemPerSecond]:
    window = window_seconds()
    return (
        RateLimitItemPerSecond(tier.rpm, window, namespace="yiweb-requests"),
        RateLimitItemPerSecond(tier.tpm, window, namespace="yiweb-tokens"),
    )


def _cooldown_key(name: str) -> str:
    return f"yiweb-cooldown/{name}"


async def _cooldown_left(counts: _Counts, name: str) -> float:
    key = _cooldown_key(name)
    if not await counts.storage.get(key):
        return 0.0
    return max(await counts.storage.get_expiry(key) - time.time(), 0.0)


async def pacing_slow_down(credential: Credential, retry_after: float | None) -> None:
    """The API answered 429 all the same: hold every request of this credential, in every
    process, back for `retry_after` seconds (the API's Retry-After), or for one request's
    share of the window when it named none."""
    tier = tier_of(credential.tier)
    if tier is None or not settings.PACING:
        return
    seconds = retry_after if retry_after is not None else window_seconds() / tier.rpm
    seconds = max(math.ceil(seconds), 1)  # the storage's expiries are whole seconds
    try:
        counts = _counts_here()
        if await _cooldown_left(counts, credential.cache_id) >= seconds:
            return
        await counts.storage.clear(_cooldown_key(credential.cache_id))
        await counts.storage.incr(_cooldown_key(credential.cache_id), seconds)
    except Exception as error:  # the storage's outage: the client's own backoff still waits
        storage_outage.failed(error)
        return
    storage_outage.worked()
    line = _lines.get(credential.cache_id)
    if line is not None and line.waiters:
        line.waiters[0].moved.set()  # the head asks again, and learns of the wait


# --- the line ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Waiter:
    tokens: int
    on_queued: OnQueued | None
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    told: tuple[int, float] | None = None  # (position, when it was said to go, monotonic)

    async def tell(self, position: int, starts_at: float) -> None:
        """Say where it stands, when its place or the estimate (by a second or more) changed."""
        if self.on_queued is None:
            return
        if self.told is not None and self.told[0] == position and abs(self.told[1] - starts_at) < 1.0:
            return
        self.told = (position, starts_at)
        await self.on_queued(position, max(starts_at - time.monotonic(), 0.0))


@dataclass(eq=False)
class _Line:
    """The requests of one credential waiting in this process, first come first served."""

    rpm: int
    waiters: list[_Waiter] = field(default_factory=list)
    sent: deque[float] = field(default_factory=deque)  # wall times of this process's last requests
    # When each waiter is expected to go, by place in the line (monotonic); set by the head.
    schedule: list[float] = field(default_factory=list)
    # The head found no room: until then (a burst that fits, the head asking a slow Redis)
    # nobody is told of a queue.
    blocked: bool = False

    def starts_at(self, position: int) -> float:
        if not self.schedule:
            return time.monotonic()
        index = position - 1
        rounds, slot = divmod(index, len(self.schedule))
        return self.schedule[slot] + rounds * window_seconds()


_lines: dict[str, _Line] = {}


async def pacing_wait(credential: Credential, tokens: int, *, on_queued: OnQueued | None = None) -> None:
    """Return once a request of about `tokens` tokens made with `credential` fits its tier,
    counted as made; wait in this process's line for the credential until then, telling
    `on_queued` where it stands. Cancellable: a request cancelled while it waits was never
    counted and nothing was sent."""
    tier = tier_of(credential.tier)
    if tier is None or not settings.PACING:
        return
    line = _lines.get(credential.cache_id)
    if line is None or line.rpm != tier.rpm:
        line = _lines[credential.cache_id] = _Line(rpm=tier.rpm, waiters=line.waiters if line else [])
    waiter = _Waiter(min(max(tokens, 1), tier.tpm), on_queued)
    line.waiters.append(waiter)
    try:
        while True:
            waiter.moved.clear()
            position = line.waiters.index(waiter) + 1
            timeout = None
            if position == 1:
                wait = await _turn(line, tier, credential.cache_id, waiter.tokens)
                if wait <= 0:
                    return
                timeout = wait + 0.01  # its oldest entry must have left the window
                for other in line.waiters[1:]:
                    other.moved.set()  # their estimates hang on the head's
            if line.blocked:
                await waiter.tell(position, line.starts_at(position))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.moved.wait(), timeout)
    finally:
        place = line.waiters.index(waiter)
        del line.waiters[place]
        for other in line.waiters[place:]:
            other.moved.set()  # one place up
        if not line.waiters and _lines.get(credential.cache_id) is line:
            # Kept while its requests' times still help estimate a queue's wait.
            cutoff = time.time() - window_seconds()
            while line.sent and line.sent[0] < cutoff:
                line.sent.popleft()
            if not line.sent:
                del _lines[credential.cache_id]


async def _turn(line: _Line, tier: Tier, name: str, tokens: int) -> float:
    """For the head of the line: count the request and return 0 if it may go now; else the
    seconds to wait before asking again (and `line.schedule` updated for the estimates)."""
    requests, token_limit = _items(tier)
    try:
        counts = _counts_here()
        wait = await _cooldown_left(counts, name)
        if not wait and await counts.tokens.test(token_limit, name, cost=tokens):
            if await counts.requests.hit(requests, name):
                # Between the test and here another process may have taken the tokens: the
                # request goes all the same (at worst a 429, which slows the key down).
                await counts.tokens.hit(token_limit, name, cost=tokens)
                _sent(line, tier)
                storage_outage.worked()
                return 0.0
        now = time.time()
        stats = await counts.requests.get_window_stats(requests, name)
        token_stats = await counts.tokens.get_window_stats(token_limit, name)
    except Exception as error:
        # The storage does not answer: go unpaced rather than hold every answer on it.
        storage_outage.failed(error)
        line.blocked = False
        return 0.0
    storage_outage.worked()
    if stats.remaining <= 0:
        wait = max(wait, stats.reset_time - now)
    if token_stats.remaining < tokens:
        # The counter's reset is when its count next drops; asked again then.
        wait = max(wait, token_stats.reset_time - now, 0.1)
    wait = max(wait, 0.05)
    _schedule(line, tier, now=now, head_wait=wait, oldest_free=stats.reset_time, in_window=tier.rpm - stats.remaining)
    return wait


def _sent(line: _Line, tier: Tier) -> None:
    line.blocked = False
    line.sent.append(time.time())
    while len(line.sent) > tier.rpm:
        line.sent.popleft()
    if line.schedule:
        # Its slot is taken, until a window from now; the next in line has the next one.
        line.schedule = line.schedule[1:] + [time.monotonic() + window_seconds()]


def _schedule(line: _Line, tier: Tier, *, now: float, head_wait: float, oldest_free: float, in_window: int) -> None:
    """When each of the next RPM places in line is expected to go. A request's slot frees a
    window after it was made: this process knows its own requests' times; those of other
    processes (the window holds more than this process sent) are taken to free with the
    oldest. Nobody goes before the head."""
    window = window_seconds()
    own = sorted(t + window for t in line.sent if t + window > now)
    others = max(in_window - len(own), 0)
    frees = sorted([oldest_free] * others + own)
    frees = [now] * max(tier.rpm - len(frees), 0) + frees
    head = now + head_wait
    offset = time.monotonic() - now  # wall clock to monotonic
    line.schedule = [max(at, head) + offset for at in frees[: tier.rpm]]
    line.blocked = True
