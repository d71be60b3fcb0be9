"""yiweb.server: a websocket frame leaves in the call that writes it; plain HTTP still buffers.

Real sockets, Twisted's own TCP connection class and Daphne's own websocket protocol;
only the reactor is a recorder, to show whether a write waited for the event loop's next
turn. (`websocket_writes_immediate` stays installed for the rest of the test process, as
it is in a server: installing it twice does nothing.)
"""

import socket

import pytest
from daphne.ws_protocol import WebSocketFactory
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
        if writer in self.writers:
            self.writers.remove(writer)

    def addReader(self, reader):
        pass

    def removeReader(self, reader):
        pass

    def callLater(self, delay, function, *args, **kwargs):
        pass  # autobahn's timeouts, and abortConnection's deferred close: not this test's business


class Port:
    """What tcp.Server asks of the listening port it came from."""

    _realPortNumber = 8000
    _type = "TCP"
    _addressType = None


@pytest.fixture
def pair():
    """(the server side as Twisted's tcp.Server, the client's socket, the reactor)."""
    websocket_writes_immediate()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, address = listener.accept()
    reactor = Reactor()
    connection = tcp.Server(server, None, address, Port(), 1, reactor)
    connection.connected = True
    client.setblocking(False)
    yield connection, client, reactor
    server.close()
    client.close()


def received(client) -> bytes:
    try:
        return client.recv(100_000)
    except BlockingIOError:
        return b""


def arrived(client) -> bytes:
    client.settimeout(1)
    return client.recv(100_000)


def websocket_made(connection) -> None:
    """What Daphne does on a websocket upgrade: its WebSocketProtocol takes the transport."""
    protocol = WebSocketFactory(server_class=None).buildProtocol(connection.getPeer())
    connection.protocol = protocol
    protocol.makeConnection(connection)


def test_daphne_websocket_frames_are_sent_in_the_write_itself(pair):
    connection, client, reactor = pair
    websocket_made(connection)

    connection.write(b"frame 1")
    assert arrived(client) == b"frame 1"
    assert reactor.writers == []  # nothing left for the loop's next turn


def test_plain_http_still_waits_for_the_loops_turn(pair):
    connection, client, reactor = pair
    connection.setTcpNoDelay(True)  # as Twisted's HTTPChannel does

    connection.write(b"head ")
    connection.write(b"body")
    assert received(client) == b""
    assert reactor.writers == [connection]

    connection.doWrite()  # the loop's turn: both leave together
    assert arrived(client) == b"head body"


def test_a_frame_never_overtakes_one_still_queued(pair):
    connection, client, reactor = pair
    connection.write(b"queued ")  # buffered: the connection was still plain HTTP
    websocket_made(connection)

    connection.write(b"next")
    assert received(client) == b""  # not sent ahead of what waits
    connection.doWrite()
    assert arrived(client) == b"queued next"


def test_after_abort_nothing_more_is_sent(pair):
    connection, client, reactor = pair
    websocket_made(connection)
    connection.abortConnection()

    connection.write(b"too late")
    assert received(client) == b""


def test_a_websocket_whose_reader_does_not_read_is_dropped_once_its_backlog_passes_the_limit(pair, settings):
    settings.WEBSOCKET_BUFFER_MAX_BYTES = 256 * 1024
    connection, client, reactor = pair
    websocket_made(connection)
    chunk = b"x" * 65536
    written = 0
    while not connection._aborting and written < 64 * 1024 * 1024:  # the client never reads
        connection.write(chunk)
        written += len(chunk)
    assert connection._aborting
    backlog = len(connection.dataBuffer) - connection.offset + connection._tempDataLen
    assert settings.WEBSOCKET_BUFFER_MAX_BYTES < backlog <= settings.WEBSOCKET_BUFFER_MAX_BYTES + len(chunk)


def test_a_websocket_that_reads_is_never_dropped_however_much_it_is_sent(pair, settings):
    settings.WEBSOCKET_BUFFER_MAX_BYTES = 256 * 1024
    connection, client, reactor = pair
    websocket_made(connection)
    client.setblocking(True)
    for _ in range(200):  # 12.5 MB in all, read as it comes
        connection.write(b"y" * 65536)
        connection.doWrite()
        got = 0
        client.settimeout(1)
        while got < 65536:
            got += len(client.recv(65536))
    assert not connection._aborting


# --- POST bodies: Django's to parse, not Twisted's on the event loop --------------------------


MULTIPART = (
    b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
    b"Content-Type: image/png\r\n\r\n" + b"\x89PNG" + b"\0" * 1000 + b"\r\n--xyz--\r\n"
)


def _received(request_class, **options):
    """A multipart POST fed to a Twisted Request the way its channel feeds it."""
    from io import BytesIO

    from twisted.web.test.requesthelper import DummyChannel

    class Recorded(request_class):
        def process(self):  # no app behind it: only what requestReceived parsed matters
            pass

    request = Recorded(DummyChannel(), **options)
    request.requestHeaders.setRawHeaders(b"content-type", [b"multipart/form-data; boundary=xyz"])
    request.requestHeaders.setRawHeaders(b"content-length", [str(len(MULTIPART)).encode()])
    request.content = BytesIO()
    request.content.write(MULTIPART)  # as the channel leaves it: at the end of the body
    request.requestReceived(b"POST", b"/attachments/", b"HTTP/1.1")
    return request


def test_twisted_still_parses_post_bodies_unless_told_not_to():
    """The reach `post_bodies_unparsed` relies on: if a Twisted upgrade renames or drops
    the switch, this fails, and the server would parse every upload on its event loop again."""
    from twisted.web.http import Request

    assert _received(Request).args.get(b"file") is not None  # the cost being avoided is real
    assert _received(Request, parsePOSTFormSubmission=False).args == {}
    assert _received(Request, parsePOSTFormSubmission=False)._parsePOSTFormSubmission is False


def test_daphnes_requests_leave_post_bodies_to_django():
    from daphne.http_protocol import WebRequest
    from twisted.web.test.requesthelper import DummyChannel

    from yiweb.server import post_bodies_unparsed

    post_bodies_unparsed()
    channel = DummyChannel()
    channel.factory = type("Factory", (), {"server": type("Server", (), {"protocol_connected": lambda self, r: None})()})()
    assert WebRequest(channel)._parsePOSTFormSubmission is False


def test_daphne_hands_bodies_to_the_app_in_large_pieces():
    """`server_class` relies on Daphne's Server taking `request_buffer_size` and its
    requests reading it when they pass the body on: if an upgrade drops either, this fails
    (and every upload would again cost the relay's thread a loop turn per 8 KiB)."""
    import inspect

    from daphne.http_protocol import WebRequest

    from yiweb.server import REQUEST_BUFFER_SIZE, server_class

    server = server_class()(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # not started
    assert server.request_buffer_size == REQUEST_BUFFER_SIZE > 8192
    assert "self.server.request_buffer_size" in inspect.getsource(WebRequest.process)
