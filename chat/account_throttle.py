"""Limits on signing in and signing up, counted per username and per client address.

Failed sign-ins are counted per username (whether or not it exists, so that the refusal
says nothing about which do) and per address, over a window that starts at the first
failure; at a limit, sign-in is refused without checking the password until the window
ends. Sign-ups that get as far as the username check (an account made, or the name
refused as taken) are counted per address and hour: that check is the only answer that
depends on which names exist, and this is what bounds guessing them.

The counts live in the "limits" cache: process memory on one machine, Redis when
REDIS_URL is set, so that every process shares one count. While Redis is down nothing is
counted or refused (one log line when that starts, one when it ends): a sign-in is not
worth failing over a limit, and the password check's own cost still slows guessing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from chat.outages import Outage

SIGNUP_WINDOW = 3600.0

_outage = Outage("the sign-in limits' cache")


@dataclass(frozen=True)
class Refusal:
    message: str
    retry_after: int  # seconds


# --- reads ----------------------------------------------------------------------------


def signin_refusal(*, request: HttpRequest, username: str) -> Refusal | None:
    """Why this sign-in must not even be tried now, or None."""
    window = settings.SIGNIN_PAUSE_SECONDS
    address = _over_limit(_key("signin-address", client_address(request)), settings.SIGNIN_FAILURES_PER_ADDRESS, window)
    if address is not None:
        return Refusal(_("Too many failed sign-ins from your network address. Try again in %(wait)s.") % {
            "wait": _minutes(address)}, address)
    account = _over_limit(_key("signin-account", username), settings.SIGNIN_FAILURES_PER_ACCOUNT, window)
    if account is not None:
        return Refusal(_("Too many failed sign-ins to this account. Try again in %(wait)s; the password was not "
                         "checked.") % {"wait": _minutes(account)}, account)
    return None


def signup_refusal(*, request: HttpRequest) -> Refusal | None:
    wait = _over_limit(_key("signup-address", client_address(request)), settings.SIGNUPS_PER_ADDRESS_PER_HOUR,
                       SIGNUP_WINDOW)
    if wait is None:
        return None
    return Refusal(_("Too many sign-ups from your network address. Try again in %(wait)s.") % {"wait": _minutes(wait)},
                   wait)


def client_address(request: HttpRequest) -> str:
    """Who is asking, as far as limits go: the client's IP address, or for IPv6 its /64
    (one household or server gets a whole /64, so counting single IPv6 addresses would let
    one client take 2^64 turns)."""
    raw = request.META.get("REMOTE_ADDR", "")
    header = settings.CLIENT_ADDRESS_HEADER
    if header:
        # The last entry is the one the nearest proxy wrote; a client can only prepend.
        forwarded = request.META.get("HTTP_" + header.upper().replace("-", "_"), "").split(",")[-1].strip()
        raw = forwarded or raw
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# --- writes ---------------------------------------------------------------------------


def signin_failed(*, request: HttpRequest, username: str) -> None:
    window = settings.SIGNIN_PAUSE_SECONDS
    _count(_key("signin-address", client_address(request)), window)
    _count(_key("signin-account", username), window)


def signin_succeeded(*, username: str) -> None:
    """The account's count starts again; the address's does not, or one good account would
    let its owner guess at others without end."""
    _forget(_key("signin-account", username))


def signup_attempted(*, request: HttpRequest) -> None:
    _count(_key("signup-address", client_address(request)), SIGNUP_WINDOW)


# --- the counts -----------------------------------------------------------------------


def _key(kind: str, who: str) -> str:
    # Hashed: usernames may hold anything, and cache keys should not.
    return f"{kind}:{hashlib.sha256(who.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def _over_limit(key: str, limit: int, window: float) -> int | None:
    """Seconds until `key`'s window ends if it has reached `limit`, else None."""
    if limit <= 0:
        return None
    counts = _cache_call(lambda cache: cache.get_many([key, key + ":since"]), {})
    if counts.get(key, 0) < limit:
        return None
    since = counts.get(key + ":since", time.time())
    return max(1, math.ceil(since + window - time.time()))


def _count(key: str, window: float) -> None:
    def count(cache) -> None:
        timeout = math.ceil(window)
        cache.add(key + ":since", time.time(), timeout)
        if cache.add(key, 1, timeout):
            return
        try:
            cache.incr(key)
        except ValueError:  # the window ended between the two calls
            cache.set(key, 1, timeout)

    _cache_call(count, None)


def _forget(key: str) -> None:
    _cache_call(lambda cache: cache.delete_many([key, key + ":since"]), None)


def _cache_call(call, fallback):
    if not _outage.worth_trying():
        _outage.skipped()
        return fallback
    try:
        result = call(caches["limits"])
    except Exception as error:  # noqa: BLE001 (whatever the cache's client raises: Redis down, timed out)
        _outage.failed(error)
        return fallback
    _outage.worked()
    return result


def _minutes(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return _("a minute") if minutes <= 1 else ngettext("%(count)s minute", "%(count)s minutes", minutes) % {
        "count": minutes}
