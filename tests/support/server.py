"""Serve an ASGI app on a loopback port under uvicorn for the length of a test.

    async with serve_asgi(sandbox.app()) as base_url:   # "http://127.0.0.1:<port>"
        ...

By default the server runs as a task on the test's own event loop, so the app may share
loop-bound objects (database engines, queues) with the test. Pass `thread=True` when the test
blocks the loop (for instance `subprocess.run` of the bot against the app): the server then gets
its own loop in a background thread. Either way the port is bound before the server starts, the
context is entered only once uvicorn is accepting connections, and leaving it shuts the server
down and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
from collections.abc import AsyncIterator, Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from tests.support.ports import loopback_socket

STARTUP_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 10.0
POLL = 0.005


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn installs SIGINT/SIGTERM handlers when it runs on the main thread and restores
        # the previous ones when it stops; with two servers stopping out of order that leaves a
        # dead server's handler behind and Ctrl-C stops working. A test server takes no signals.
        yield


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, *, thread: bool = False) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and yield its base URL, e.g. "http://127.0.0.1:41234"."""
    sock = loopback_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
        lifespan="auto",
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    worker: threading.Thread | None = None
    task: asyncio.Task[None] | None = None
    if thread:
        worker = threading.Thread(
            target=functools.partial(asyncio.run, _serve(server, sock)),
            name="test-server",
            daemon=True,
        )
        worker.start()
        stopped: Callable[[], bool] = lambda: not worker.is_alive()  # noqa: E731
    else:
        task = asyncio.create_task(_serve(server, sock))
        stopped = task.done
    try:
        await _started(server, stopped)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        if worker is not None:
            await asyncio.to_thread(worker.join, SHUTDOWN_TIMEOUT)
            if worker.is_alive():
                raise RuntimeError(f"the test server did not stop within {SHUTDOWN_TIMEOUT} s")
        if task is not None:
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT)
        sock.close()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn ends a failed startup with sys.exit(), which would stop the test's loop (or be
    # reported as a crashed thread); the caller sees the server stop instead and says so.
    with contextlib.suppress(SystemExit):
        await server.serve(sockets=[sock])


async def _started(server: uvicorn.Server, stopped: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while not server.started:
        if stopped():
            raise RuntimeError("the test server stopped during startup (see the log)")
        if loop.time() > deadline:
            raise RuntimeError(f"the test server did not start within {STARTUP_TIMEOUT} s")
        await asyncio.sleep(POLL)
