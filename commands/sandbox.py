"""What every provider sandbox shares: a request log and switches to stall or fail.

A sandbox is a Starlette app that behaves as the provider's documents say. The console and unit
tests reach it in-process through `httpx.ASGITransport`; end-to-end tests serve it on a loopback
port. `SandboxControl` lets a test make it slow, broken, careless with secrets or held, and see
what it was asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class Sandbox(Protocol):
    """What a provider sandbox offers the console and the tests."""

    control: SandboxControl
    # The attributes holding the provider's data (not switches, clocks, logs or one-time keys),
    # which the console keeps between runs (commands/sandbox_state.py).
    persisted: ClassVar[tuple[str, ...]]

    def app(self) -> ASGIApp: ...

    def samples(self) -> list[tuple[str, str]]:
        """(what, ids) a person can try, e.g. ("customer accounts", "10023–10222")."""
        ...


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


# A sandbox's answer quoting the credentials a request carried (see `echo_secrets`).
Echo = Callable[[Request], Awaitable[Response]]


@dataclass
class SandboxControl:
    """Shared switches. `stall` delays every answer; `fail_status` answers every request with it;
    `drop` closes the connection without answering (a lost reply); `echo_secrets` answers every
    request with the provider's own error shape quoting the credentials it carried, bare (as a
    careless server might: only the secrets the client registered can mask them).

    `hold()` keeps every answer from then on waiting until `release()`; `wait_held(n)` returns
    once `n` requests are waiting, so a test knows a call is in flight without guessing how long
    it takes. The gate belongs to the event loop serving the sandbox: hold and release it there.
    """

    stall: float = 0.0
    fail_status: int | None = None
    drop: bool = False
    echo_secrets: bool = False
    requests: list[Recorded] = field(default_factory=list)
    held: int = 0  # requests waiting at the gate now
    _gate: asyncio.Event | None = field(default=None, repr=False, compare=False)
    _arrived: asyncio.Condition = field(
        default_factory=asyncio.Condition, repr=False, compare=False
    )

    def reset(self) -> None:
        self.stall = 0.0
        self.fail_status = None
        self.drop = False
        self.echo_secrets = False
        self.release()
        self.requests.clear()

    def hold(self) -> None:
        """Answers wait (each request is recorded first) until `release()`."""
        if self._gate is None:
            self._gate = asyncio.Event()

    def release(self) -> None:
        """Let the held answers go, and stop holding new ones."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    async def wait_held(self, count: int = 1, *, timeout: float = 30.0) -> None:
        """Wait until `count` requests are held; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: self.held >= count)

    async def gate(self) -> None:
        """Where a request waits while the sandbox is held (called by `ControlMiddleware`)."""
        gate = self._gate
        if gate is None:
            return
        async with self._arrived:
            self.held += 1
            self._arrived.notify_all()
        try:
            await gate.wait()
        finally:
            self.held -= 1


class ControlMiddleware:
    """Applies the `SandboxControl` switches around a sandbox app; `echo` is the sandbox's
    answer for `echo_secrets`."""

    def __init__(self, app: ASGIApp, control: SandboxControl, *, echo: Echo | None = None) -> None:
        self.app = app
        self.control = control
        self.echo = echo

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        self.control.requests.append(
            Recorded(
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        if self.control.stall:
            await asyncio.sleep(self.control.stall)
        await self.control.gate()

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        if self.control.drop:
            # The provider acts on the request, and the answer is lost on the way back. In-process
            # (ASGITransport) this surfaces in the client as the transport error it would see;
            # over a socket, use `stall` beyond the client's timeout instead.
            async def swallow(message: Any) -> None:
                return None

            await self.app(scope, replay, swallow)
            raise httpx.ReadError("connection lost before the answer")
        if self.control.fail_status is not None:
            await Response("sandbox failure", status_code=self.control.fail_status)(
                scope, replay, send
            )
            return
        if self.control.echo_secrets:
            if self.echo is None:
                raise RuntimeError("this sandbox has no answer that echoes secrets")
            answer = await self.echo(Request(scope, replay))
            await answer(scope, replay, send)
            return
        await self.app(scope, replay, send)
