"""A loopback TCP proxy between the bot and PostgreSQL that a test can cut, as a restart does.

    async with db_proxy(database_url) as proxy:      # proxy.url: the same database, via the proxy
        ...
        proxy.cut()       # every connection dropped at once, new ones refused (closed on accept)
        ...               # what the bot does while the server is away
        proxy.resume()    # connections accepted again

A restarting server closes every client connection (the clients see the socket end mid-query or
at their next use) and refuses new ones until it is up; `cut` does both to this test's
connections only, so the shared server other tests use is never touched. The proxy runs on an
event loop of its own, in a thread, as a network would: the bot's loop holds none of its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url


@dataclass
class DbProxy:
    host: str
    port: int
    url: str = ""
    refusing: bool = False
    cuts: int = 0
    refused: int = 0
    accepted: int = 0
    links: set[asyncio.StreamWriter] = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `resume` (done when it returns)."""
        self.refusing = True
        self.cuts += 1
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self._drop(), self.loop).result(timeout=10)

    async def _drop(self) -> None:
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    def resume(self) -> None:
        self.refusing = False

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            self.refused += 1
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.port)
        except OSError:
            client_w.transport.abort()
            return
        self.accepted += 1
        self.links |= {client_w, server_w}
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            for writer in (client_w, server_w):
                self.links.discard(writer)
                writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()  # one side gone: so is the other, as with a dropped server


@contextlib.asynccontextmanager
async def db_proxy(database_url: str) -> AsyncIterator[DbProxy]:
    target = make_url(database_url)
    proxy = DbProxy(host=target.host or "127.0.0.1", port=target.port or 5432)
    loop = asyncio.new_event_loop()
    proxy.loop = loop
    thread = threading.Thread(target=loop.run_forever, name="db-proxy", daemon=True)
    thread.start()

    async def serve() -> asyncio.Server:
        return await asyncio.start_server(proxy.handle, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
    port = server.sockets[0].getsockname()[1]
    proxy.url = target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        yield proxy
    finally:
        proxy.refusing = True
        asyncio.run_coroutine_threadsafe(proxy._drop(), loop).result(timeout=10)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        loop.close()
