"""Daphne on uvloop: `python -m yiweb.server [Daphne's options] yiweb.asgi:application`.

Daphne runs Twisted on an asyncio loop that it creates when `daphne.server` is first
imported, so the loop policy has to be set before that import. uvloop's loop is written
in C: on two cores it read a socket event in 9 µs against asyncio's 29 µs (docs/benchmarks.md).
Once started, the process freezes its start-up objects out of the garbage collector,
websocket frames are written to their socket at once (`websocket_writes_immediate`), and
POST bodies are left for Django to parse (`post_bodies_unparsed`).
When it is told to stop, its running answers end as interrupted with all their text
(`stopping`).
"""

import asyncio
import gc
import logging
import os
import sys

import uvloop
from twisted.internet.defer import Deferred  # no reactor installed by this import


def websocket_writes_immediate() -> None:
    """Send a websocket frame in the call that writes it, when nothing is queued before it;
    drop a websocket whose unsent frames pass WEBSOCKET_BUFFER_MAX_BYTES.

    Twisted buffers every write and sends it on the event loop's next turn, once the socket
    is reported writable: under load one more whole turn of a busy loop for every relayed
    frame, plus registering and unregistering the socket for write events. asyncio's own
    transports try the socket first and buffer only what it did not take; this does the
    same for the TCP connections Daphne hands to a websocket (autobahn turns Nagle's
    algorithm off on them, so a frame is a packet at once). Plain HTTP keeps Twisted's
    buffering (writing it at once too made no measurable difference to the relay).
    At 50 streams, 10 interleaved rounds each: per-delta p99 median 18.9 -> 16.7 ms, mean
    25.8 -> 19.1 ms (docs/benchmarks.md). It reads Twisted's private write buffers
    (Twisted is pinned); tests/test_server.py fails if they change.
    """
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import tcp

    if getattr(tcp.Connection, "writes_immediate", None) is not None:
        return  # already in place
    write_buffered = tcp.Connection.write
    websocket_made = WebSocketProtocol.connectionMade

    def connectionMade(self) -> None:
        # Daphne hands the HTTP connection's transport over on the upgrade; behind TLS
        # the transport is TLS's own and keeps Twisted's path.
        if isinstance(self.transport, tcp.Connection):
            self.transport.writes_immediate = True
            self.transport.buffer_max = _websocket_buffer_max()
        websocket_made(self)

    def write(self, data: bytes) -> None:
        if (
            self.writes_immediate
            and type(data) is bytes
            and data
            and not self.TLS
            and self.connected
            and not self.disconnected
            and not self._aborting
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
            # a pull producer is asked for more from doWrite, which this path skips
            and (self.producer is None or self.streamingProducer)
        ):
            sent = self.writeSomeData(data)  # an int, or the error doWrite will meet again
            if isinstance(sent, int) and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        write_buffered(self, data)
        if self.writes_immediate and len(self.dataBuffer) - self.offset + self._tempDataLen > self.buffer_max:
            # A websocket whose reader does not read: each frame for it waits here, in
            # memory. One that sent subscribe after subscribe for a long answer made the
            # server hold a snapshot per frame (1.6 GB, kept after it left). Drop it; a
            # real tab that was only slow reconnects and catches up.
            self.abortConnection()

    tcp.Connection.writes_immediate = False
    tcp.Connection.buffer_max = 0
    tcp.Connection.write = write
    WebSocketProtocol.connectionMade = connectionMade


def post_bodies_unparsed() -> None:
    """Leave a POST body to Django, which reads it in a worker thread, instead of Twisted
    parsing it again on the event loop.

    Twisted's Request parses every form and multipart POST into `request.args`, with the
    standard library's email parser, in the reactor's thread, before Daphne sees the
    request; Daphne never reads `args` (Django parses the body itself). One 5.8 MB image
    upload held every websocket on the process for 0.36-0.48 s (docs/benchmarks.md).
    Twisted 26.10 lets a Request skip it (`parsePOSTFormSubmission=False`); Daphne makes
    its requests itself, so this sets that choice on each. It reads a private attribute
    of Twisted's (Twisted is pinned); tests/test_server.py fails if it changes.
    """
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "post_bodies_unparsed", False):
        return  # already in place
    made = WebRequest.__init__

    def __init__(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest.post_bodies_unparsed = True


def _websocket_buffer_max() -> int:
    from django.conf import settings

    return settings.WEBSOCKET_BUFFER_MAX_BYTES


# Daphne hands a request's body to the app in pieces of this many bytes, a message and an
# event-loop turn each (its default, 8 KiB, made a 5.8 MB photo ~700 of them, every one
# on the thread that relays the answers: bench/images.py). The body is already in memory
# or a temporary file by then; bigger pieces only mean fewer turns.
REQUEST_BUFFER_SIZE = 1024 * 1024


def server_class():
    """Daphne's Server, handing bodies to the app in REQUEST_BUFFER_SIZE pieces (a
    constructor argument its command line does not offer)."""
    from daphne.server import Server

    class YiwebServer(Server):
        def __init__(self, *args, **kwargs):
            kwargs["request_buffer_size"] = REQUEST_BUFFER_SIZE
            super().__init__(*args, **kwargs)

    return YiwebServer


# Answers a stopping process could not store in time (see `stopping`).
_left_unstored = 0


def stopping() -> Deferred | None:
    """Before the reactor stops (SIGTERM, SIGINT): close the websockets with 4012 (service
    restart) so that pages reconnect at once, to another process, instead of seeing the
    connection drop (1006) when Daphne cancels the consumers in this same phase; then end
    the running answers as interrupted with all their text, and close the upstream
    connections. The pages learn those endings from the process they reconnect to."""
    consumers = sys.modules.get("chat.consumers")
    generation = sys.modules.get("chat.running")  # imported once the app could run answers
    if consumers is None and generation is None:
        return None  # not the chat app (the simulator), or it never served a socket

    async def stop() -> None:
        global _left_unstored
        if consumers is not None:
            await consumers.sockets_close()
        if generation is not None:
            from chat.shutdown import generations_interrupt
            from chat.upstream import pool_close

            _left_unstored = await generations_interrupt()
            await pool_close()

    return Deferred.fromFuture(asyncio.ensure_future(stop()))


def main(argv: list[str] | None = None) -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from daphne.cli import CommandLineInterface  # creates Twisted's loop under the policy
    from twisted.internet import reactor  # the one daphne.server installed

    # When the reactor starts, once Daphne has imported the application: what start-up
    # made lives as long as the process, so the collector stops walking it. A full
    # collection took 73 ms at 50 streams (a stall every relayed delta felt), 11 ms after.
    reactor.callWhenRunning(gc.freeze)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    websocket_writes_immediate()
    post_bodies_unparsed()
    cli = CommandLineInterface()
    cli.server_class = server_class()
    cli.run(sys.argv[1:] if argv is None else argv)
    if _left_unstored:
        # Their writes still wait in the database thread (a lock, a dead connection), and
        # Python would wait for that thread: the stop must not outlast its promise.
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
