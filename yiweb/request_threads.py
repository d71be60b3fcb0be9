"""HTTP requests run their sync code on threads kept from one request to the next.

Django's ASGI handler wraps every request (a page, an API call, and every static file,
since WhiteNoise is Django middleware) in asgiref's ThreadSensitiveContext, which starts
a thread for the request's first sync call and, at its end, starts another thread to
join it. Each `Thread.start` waits, on the event loop that relays every live answer,
until the new thread has run: up to 400 ms at a time on two busy cores, and about half
of the time the loop stood still while ten people loaded pages beside twenty answers
(bench/pages.py, docs/benchmarks.md: with this, the loop's time in Thread.start -86 to
-98%, those answers' delta p50 0.40-0.79x).

`RequestThreads` lends each request an executor of one long-lived thread through
asgiref's public `ThreadSensitiveContext(executor=...)`; Django's own context inside it
then uses that executor. What ThreadSensitiveContext is for still holds: one request's
sync code (middleware, view, response close) runs on one thread, and two requests at once
on two threads. A request's thread also keeps its SQLite connection for the next request
(CONN_MAX_AGE, yiweb/settings.py) instead of opening one per request.
tests/test_request_threads.py fails if an upgrade of asgiref or Django changes this.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext

# Idle threads kept for the next requests; a burst past it starts threads as Django did,
# and lets them go after its requests without a join on the loop. Each idle thread may
# hold a SQLite connection (up to its 2 MB page cache); a static file opens none. Ten
# people loading the chat page at once keep 60 requests in flight (six connections each).
IDLE_MAX = 64
_numbers = itertools.count(1)


class RequestThread(ThreadPoolExecutor):
    """One thread, lent to one request at a time, which counts the calls it has finished
    so that it is lent again only when its request left nothing running on it."""

    def __init__(self) -> None:
        # Named apart (request-1_0, request-2_0, ...): where a request ran, in a traceback or py-spy.
        super().__init__(max_workers=1, thread_name_prefix=f"request-{next(_numbers)}")
        self.submitted = 0  # written on the event loop only
        self.finished = 0  # written on this executor's thread only

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(self._counted, fn, *args, **kwargs)

    def _counted(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            self.finished += 1


class RequestThreads:
    """ASGI middleware around Django's handler: each HTTP request on a lent RequestThread."""

    def __init__(self, app) -> None:
        self.app = app
        self.idle: list[RequestThread] = []

    async def __call__(self, scope, receive, send) -> None:
        thread = self.idle.pop() if self.idle else RequestThread()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.app(scope, receive, send)
        finally:
            if thread.finished == thread.submitted and len(self.idle) < IDLE_MAX:
                self.idle.append(thread)  # the most recently used is lent first: its caches are warm
            else:
                # A call of a cancelled request still runs on it (or the burst is over):
                # the thread ends once it is done, and nobody waits for it here.
                thread.shutdown(wait=False)
