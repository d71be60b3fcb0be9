"""A TCP proxy in a background thread whose connections a test can cut: a real network drop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.simulator_server import free_port


class CuttableProxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer), return_exceptions=True
        )
        self.writers -= {client_writer, server_writer}

    def cut(self) -> None:
        """Reset every open connection, as a network blip would."""

        def reset() -> None:
            for writer in list(self.writers):
                writer.transport.abort()
            self.writers.clear()

        self.loop.call_soon_threadsafe(reset)
        self.cuts += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        ready = threading.Event()
        stop = asyncio.Event()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            ready.set()
            await stop.wait()
            server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            await asyncio.sleep(0.1)  # let the pipes see their connections end

        thread = threading.Thread(target=lambda: self.loop.run_until_complete(serve()), daemon=True)
        thread.start()
        ready.wait(5)
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            self.loop.call_soon_threadsafe(stop.set)
            thread.join(5)
