"""Daphne on uvloop: `python -m yiweb.server [Daphne's options] yiweb.asgi:application`.

Daphne runs Twisted on an asyncio loop that it creates when `daphne.server` is first
imported, so the loop policy has to be set before that import. uvloop's loop is written
in C: on two cores it read a socket event in 9 µs against asyncio's 29 µs (docs/benchmarks.md).
Once started, the process freezes its start-up objects out of the garbage collector.
"""

import asyncio
import gc
import sys

import uvloop


def main(argv: list[str] | None = None) -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface  # creates Twisted's loop under the policy
    from twisted.internet import reactor  # the one daphne.server installed

    # When the reactor starts, once Daphne has imported the application: what start-up
    # made lives as long as the process, so the collector stops walking it. A full
    # collection took 73 ms at 50 streams (a stall every relayed delta felt), 11 ms after.
    reactor.callWhenRunning(gc.freeze)
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
