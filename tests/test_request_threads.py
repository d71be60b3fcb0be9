"""yiweb.request_threads: HTTP requests through yiweb.asgi run their sync code on kept
threads, one request to one thread at a time, and start no thread on the event loop once
warm. The requests go through the real application (Channels' router, RequestThreads,
Django's ASGI handler and yiweb's middleware) on this test's event loop, as under Daphne."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from pathlib import Path

import asgiref
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_not_required
from django.core.signals import request_finished
from django.http import HttpResponse
from django.urls import include, path

from yiweb.asgi import application
from yiweb.request_threads import RequestThreads

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db(transaction=True)]

# Where each request's sync code ran, by the path it asked for: the view, and the
# request_finished signal Django sends when it closes the response.
ran_on: dict[str, list[str]] = {}
both_in_view = threading.Barrier(2, timeout=5)


def noted(request_path: str, where: str) -> None:
    ran_on.setdefault(request_path, []).append(f"{where}:{threading.current_thread().name}")


@login_not_required
def thread_view(request, name):
    noted(request.path, "view")
    if name.startswith("together"):
        both_in_view.wait()  # returns only if the other request's view runs at the same time
    return HttpResponse(threading.current_thread().name)


def finished(sender, **kwargs):
    # The signal carries no request; the view's note is the last one made on this thread.
    name = threading.current_thread().name
    for notes in ran_on.values():
        if notes and notes[-1] == f"view:{name}":
            notes.append(f"finished:{name}")
            return


urlpatterns = [path("thread/<str:name>", thread_view), path("", include("yiweb.urls"))]


@pytest.fixture(autouse=True)
def notes():
    ran_on.clear()
    request_finished.connect(finished)
    yield ran_on
    request_finished.disconnect(finished)


async def get(request_path: str) -> tuple[int, bytes]:
    """One GET through yiweb.asgi, as Daphne hands it over."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": request_path, "raw_path": request_path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    sent: list[dict] = []
    done = asyncio.Event()
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await application(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


class ThreadStarts:
    """Counts the threads started through `threading` while it is entered (every
    thread's bootstrap calls the profile function set with threading.setprofile)."""

    def __enter__(self):
        self.names: list[str] = []

        def started(frame, event, arg):
            sys.setprofile(None)
            self.names.append(threading.current_thread().name)

        threading.setprofile(started)
        return self

    def __exit__(self, *exc):
        threading.setprofile(None)


async def test_a_request_runs_its_sync_code_on_one_thread(notes):
    status, body = await get("/thread/alone")
    assert status == 200
    name = body.decode()
    assert notes["/thread/alone"] == [f"view:{name}", f"finished:{name}"]
    assert name.startswith("request")


async def test_two_requests_at_once_run_on_two_threads(notes):
    # If both were on one thread, the first view would wait at the barrier with the
    # second never started, and the barrier would break after 5 s.
    (status_a, a), (status_b, b) = await asyncio.gather(get("/thread/together-a"), get("/thread/together-b"))
    assert (status_a, status_b) == (200, 200)
    assert a != b
    assert notes["/thread/together-a"] == [f"view:{a.decode()}", f"finished:{a.decode()}"]
    assert notes["/thread/together-b"] == [f"view:{b.decode()}", f"finished:{b.decode()}"]


async def test_once_warm_requests_start_no_thread(notes):
    for _ in range(3):  # warm: the lent threads exist, and Django's default executor's
        await asyncio.gather(*(get("/thread/warm") for _ in range(4)), get("/accounts/login/"),
                             get("/static/chat/chat.js"))
    with ThreadStarts() as starts:
        for _ in range(10):
            pages = await asyncio.gather(*(get("/thread/again") for _ in range(4)), get("/accounts/login/"),
                                         get("/static/chat/chat.js"))
    assert [status for status, _ in pages] == [200] * 6
    # Django's own handler started two threads for each of these 60 requests.
    assert starts.names == []
    assert len({body for _, body in pages[:4]}) == 4


async def test_a_request_cancelled_while_its_view_runs_does_not_lend_its_busy_thread():
    release = threading.Event()

    async def busy_app(scope, receive, send):
        await sync_to_async(release.wait)()

    app = RequestThreads(busy_app)
    request = asyncio.ensure_future(app({"type": "http"}, None, None))
    await asyncio.sleep(0.1)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    assert app.idle == []  # still waiting in release.wait: not lent to the next request
    release.set()


def test_asgiref_and_django_are_the_versions_this_was_written_against():
    # RequestThreads relies on ThreadSensitiveContext(executor=...) (asgiref 3.13) and on
    # Django's handler entering a plain ThreadSensitiveContext, which defers to an outer one.
    pinned = dict(re.findall(r"^(asgiref|Django)==(\S+)", Path("requirements.txt").read_text(), re.M))
    import django

    assert (asgiref.__version__, django.get_version()) == (pinned["asgiref"], pinned["Django"]) == ("3.13.0", "5.2.19"), (
        "re-read yiweb/request_threads.py against the new asgiref / Django"
    )
