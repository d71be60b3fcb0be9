"""Which pages may open the chat websocket: this site's own, scheme, host and port alike.

A websocket is not covered by the browser's same-origin policy: any page the person has
open can try to open one to yiweb, and the browser sends yiweb's session cookie with it
(cross-site websocket hijacking). Channels' AllowedHostsOriginValidator compares only
the Origin's host with ALLOWED_HOSTS, so a page served from another port of the same
host (http://localhost:9999, any other app on the machine) or over plain http was let
in. Here the Origin must be exactly the site the socket is opened on (the Host header,
with the scheme the connection came in on, or the one a configured TLS proxy reports),
or one of CSRF_TRUSTED_ORIGINS, as Django's CSRF check demands of a form.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": "80", "https": "443"}


def _origin(scheme: str, netloc: str) -> str | None:
    """`scheme://host:port` with the port always written, lower case; None if unusable."""
    host, port = split_domain_port(netloc.lower())
    if not host or scheme not in DEFAULT_PORTS:
        return None
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def _secure(scope: dict, headers: dict[bytes, bytes]) -> bool:
    if scope.get("scheme") == "wss":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy:
        return False
    name, value = proxy
    header = name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin1")
    return headers.get(header, b"").decode("latin1").split(",")[0].strip() == value


def origin_allowed(scope: dict) -> bool:
    headers = {name.lower(): value for name, value in scope.get("headers", [])}
    origin, host = headers.get(b"origin", b"").decode("latin1"), headers.get(b"host", b"").decode("latin1")
    if not origin or not host:
        return False
    if origin.rstrip("/") in {o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS}:
        return True
    domain, _ = split_domain_port(host.lower())
    if not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    parts = urlsplit(origin)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return False
    own = _origin("https" if _secure(scope, headers) else "http", host)
    return own is not None and _origin(parts.scheme, parts.netloc) == own


class SameOriginValidator:
    """Refuse (403 during the handshake) a websocket whose Origin is not this site."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
