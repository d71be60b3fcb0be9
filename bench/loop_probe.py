"""yiweb.server with a probe of its event loop: how long the loop was kept from its next
turn, and where it was when it was.

    python -m bench.loop_probe [Daphne's options] yiweb.asgi:application   (LOOP_PROBE_FILE=path)

A callback on the loop every millisecond notes the gap since the last one; a gap of more
than STALL_S beyond the tick is a stall, written to LOOP_PROBE_FILE as a JSON line
(`at`: wall-clock end, `ms`: how long beyond the tick, `where`: the loop thread's
innermost frames, file:function, as a watchdog thread saw them once the loop was WATCH_S
late, else empty). The watchdog reads the stacks with faulthandler, so it sees a loop
blocked in a lock (which releases the GIL) at once, and a loop busy in Python code at
the interpreter's next switch. Used by bench/pages.py; costs the loop ~1000 tiny
callbacks a second, in every round alike.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import re
import tempfile
import threading
import time

import uvloop

TICK_S = 0.001
STALL_S = 0.005
WATCH_S = 0.004
FRAMES = 12
FRAME_LINE = re.compile(r'  File "(.*)", line \d+ in (\S+)')
THREAD_LINE = re.compile(r"(?:Current thread|Thread) (0x[0-9a-f]+)")


class Probe:
    def __init__(self, path: str):
        self.path = path
        self.loop_thread = threading.get_ident()
        self.last = time.monotonic()
        self.seen_at = 0.0  # the `last` whose stall the watchdog already sampled
        self.where = ""
        self.stalls: list[dict] = []

    def tick(self) -> None:
        now = time.monotonic()
        late = now - self.last - TICK_S
        if late > STALL_S:
            where = self.where if self.seen_at == self.last else ""
            self.stalls.append({"at": time.time(), "ms": round(late * 1000, 2), "where": where})
        self.last = now
        asyncio.get_running_loop().call_later(TICK_S, self.tick)

    def watch(self) -> None:
        # faulthandler walks the stacks in C, holding the GIL throughout. Walking the loop
        # thread's frames here in Python (sys._current_frames, f_back) let the loop run
        # between two steps, and once gave an AccessLogGenerator for a frame.
        with tempfile.TemporaryFile("w+") as dump:
            while True:
                time.sleep(WATCH_S / 2)
                last = self.last
                if time.monotonic() - last > WATCH_S and self.seen_at != last:
                    dump.seek(0)
                    dump.truncate()
                    faulthandler.dump_traceback(dump, all_threads=True)
                    dump.seek(0)
                    self.where, self.seen_at = loop_stack(dump.read(), self.loop_thread), last


    def flush(self) -> None:
        if self.stalls:
            stalls, self.stalls = self.stalls, []
            with open(self.path, "a") as out:
                out.writelines(json.dumps(s) + "\n" for s in stalls)
        asyncio.get_running_loop().call_later(0.25, self.flush)


def loop_stack(dump: str, thread: int) -> str:
    """The loop thread's innermost FRAMES frames in a faulthandler dump, as file:function."""
    names, inside = [], False
    for line in dump.splitlines():
        if header := THREAD_LINE.match(line):
            inside = int(header.group(1), 16) == thread
        elif inside and line.startswith("  File ") and len(names) < FRAMES:
            match = FRAME_LINE.match(line)
            if match:
                names.append(f"{os.path.basename(match.group(1))}:{match.group(2)}")
    return " < ".join(names)


def probe_start() -> None:
    probe = Probe(os.environ["LOOP_PROBE_FILE"])
    open(probe.path, "a").close()  # there, even with no stall: the probe ran
    threading.Thread(target=probe.watch, name="loop-probe", daemon=True).start()
    probe.tick()
    probe.flush()


def __getattr__(name: str):
    if name == "django_threads_application":
        # yiweb's routing with Django's own ASGI handler for HTTP: a thread started for every
        # request and joined at its end (what bench/pages.py compares yiweb's against).
        from channels.routing import ProtocolTypeRouter
        from django.core.handlers.asgi import ASGIHandler

        import yiweb.asgi

        return ProtocolTypeRouter({"http": ASGIHandler(),
                                   "websocket": yiweb.asgi.application.application_mapping["websocket"]})
    raise AttributeError(name)


def main() -> None:
    # Daphne makes Twisted's loop when daphne.server is first imported: under uvloop, as
    # yiweb.server does, so that the probe can be put on that loop before it runs.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    import daphne.server  # noqa: F401  (makes the loop)
    from twisted.internet import reactor

    from yiweb.server import main as server_main

    # A timed call, not callWhenRunning: startup triggers fire before the loop runs.
    reactor.callLater(0, probe_start)
    server_main()


if __name__ == "__main__":
    main()
