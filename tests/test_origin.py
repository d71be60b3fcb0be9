"""The chat websocket opens only from this site's own pages: scheme, host and port."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.origin import origin_allowed
from tests.conftest import session_cookie
from yiweb.asgi import application


def scope(origin: str | None, host: str, *, scheme: str = "ws", extra: list | None = None) -> dict:
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin is not None else [])
    return {"type": "websocket", "scheme": scheme, "headers": headers + (extra or [])}


@pytest.mark.parametrize("origin, host, allowed", [
    ("http://localhost:8000", "localhost:8000", True),
    ("http://localhost", "localhost", True),
    ("http://localhost:80", "localhost", True),
    ("HTTP://LOCALHOST:8000", "localhost:8000", True),
    ("http://localhost:9999", "localhost:8000", False),  # another app on the same machine
    ("https://localhost:8000", "localhost:8000", False),  # the socket came in over plain http
    ("http://evil.example", "localhost", False),
    ("http://evil.example", "evil.example", False),  # not in ALLOWED_HOSTS
    ("null", "localhost", False),  # a sandboxed iframe or a file:// page
    ("http://localhost:8000/path", "localhost:8000", False),
    ("http://user@localhost:8000", "localhost:8000", False),
    (None, "localhost", False),
])
def test_origin_must_be_this_very_site(origin, host, allowed):
    assert origin_allowed(scope(origin, host)) is allowed


def test_a_socket_over_tls_needs_an_https_origin():
    assert origin_allowed(scope("https://localhost", "localhost", scheme="wss"))
    assert not origin_allowed(scope("http://localhost", "localhost", scheme="wss"))


def test_behind_a_tls_proxy_the_scheme_comes_from_its_header_only_when_configured(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    proxied = scope("https://chat.example.com", "chat.example.com", extra=[(b"x-forwarded-proto", b"https")])
    settings.SECURE_PROXY_SSL_HEADER = None
    assert not origin_allowed(proxied)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(proxied)


def test_a_trusted_origin_is_let_in(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com"]
    assert origin_allowed(scope("https://chat.example.com", "internal:8000"))


@pytest.mark.django_db(transaction=True)
async def test_a_signed_in_socket_from_another_port_of_the_same_host_is_refused(user):
    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [(b"host", b"localhost:8000"), (b"cookie", f"sessionid={cookie}".encode())]
    other_port = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://localhost:9999"), *headers])
    assert (await other_port.connect())[0] is False
    own = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", b"http://localhost:8000"), *headers])
    assert (await own.connect())[0] is True
    await own.disconnect()
