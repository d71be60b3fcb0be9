"""yiweb.server: a websocket frame leaves in the call that writes it; plain HTTP still buffers.

Real sockets and Twisted's own TCP connection class; only the reactor is a recorder, to
show whether a write waited for the event loop's next turn.
"""

import socket

import pytest
from twisted.internet import tcp

from yiweb.server import websocket_writes_immediate


class Reactor:
    """Records the connections that asked to be told when their socket is writable."""

    def __init__(self):
        self.writers = []

    def addWriter(self, writer):
        if writer not in self.writers:  # as real reactors do: Twisted asks on every write
            self.writers.append(writer)

    def removeWriter(self, writer):
        self.writers.remove(writer)


@pytest.fixture
def pair():
    """(server side as Twisted's tcp.Connection, the client's socket, the reactor)."""
    websocket_writes_immediate()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    reactor = Reactor()
    connection = tcp.Connection(server, protocol=None, reactor=reactor)
    connection.connected = True
    client.setblocking(False)
    yield connection, client, reactor
    server.close()
    client.close()


def received(client) -> bytes:
    try:
        return client.recv(1000)
    except BlockingIOError:
        return b""


def test_a_websocket_frame_is_sent_in_the_write_itself(pair):
    connection, client, reactor = pair
    connection.setTcpNoDelay(True)  # what autobahn does for every websocket

    connection.write(b"frame 1")
    client.settimeout(1)
    assert client.recv(1000) == b"frame 1"
    assert reactor.writers == []  # nothing left for the loop's next turn


def test_plain_http_still_waits_for_the_loops_turn(pair):
    connection, client, reactor = pair

    connection.write(b"head ")
    connection.write(b"body")
    assert received(client) == b""
    assert reactor.writers == [connection]

    connection.doWrite()  # the loop's turn: both leave together
    client.settimeout(1)
    assert client.recv(1000) == b"head body"


def test_a_frame_never_overtakes_one_still_queued(pair):
    connection, client, reactor = pair
    connection.write(b"queued ")  # buffered: the socket had not been made a websocket yet
    connection.setTcpNoDelay(True)

    connection.write(b"next")
    assert received(client) == b""  # not sent ahead of what waits
    connection.doWrite()
    client.settimeout(1)
    assert client.recv(1000) == b"queued next"
