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
from typing import Any, ClassVar, Literal, Protocol

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

GarbleKind = Literal["html", "garbage", "truncated", "502"]

# What a gateway in front of a provider answers when the provider is down (nginx's own page).
BAD_GATEWAY_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body>"
    b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
# A login or maintenance page where JSON was expected (a proxy, a captive portal, a wrong URL).
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
    b"<body><h1>Please sign in</h1><form method='post'></form></body></html>"
)
# Bytes that are neither UTF-8 nor JSON, as a corrupted or mis-encoded body arrives.
GARBAGE = b"\x8b\x1f\x00\xff\xfe{\x00\x9c garbled \xc3\x28"
# Half an answer, when the provider never produced a whole one (`acted=False`).
TRUNCATED_JSON = b'{"code": 200, "data": {"id": 1'


def is_write(request: Recorded) -> bool:
    """Most providers read with GET and write with anything else."""
    return request.method != "GET"


@dataclass(frozen=True)
class Garble:
    """An unreadable answer to the requests `matches` picks (default: every method but GET).

    `kind`: "html" (200 with a login page), "garbage" (200, bytes that are neither text nor
    JSON), "truncated" (the real answer cut in half, its status and type kept) or "502" (a
    gateway's error page). `acted=True`: the provider acts on the request and the answer is
    spoiled on the way back; `acted=False`: the provider never sees it (something in front
    answers), so nothing happens there.
    """

    kind: GarbleKind
    acted: bool
    matches: Callable[[Recorded], bool] = is_write


@dataclass
class SandboxControl:
    """Shared switches. `stall` delays every answer; `fail_status` answers every request with it;
    `drop` closes the connection without answering (a lost reply); `echo_secrets` answers every
    request with the provider's own error shape quoting the credentials it carried, bare (as a
    careless server might: only the secrets the client registered can mask them).

    `hold()` keeps every answer from then on waiting until `release()`; `wait_held(n)` returns
    once `n` requests are waiting, so a test knows a call is in flight without guessing how long
    it takes. The gate belongs to the event loop serving the sandbox: hold and release it there.

    `garble` (a `Garble`) answers the requests it matches with something no client can read.
    """

    stall: float = 0.0
    fail_status: int | None = None
    drop: bool = False
    echo_secrets: bool = False
    garble: Garble | None = None
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
        self.garble = None
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
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        self.control.requests.append(recorded)
        if self.control.stall:
            await asyncio.sleep(self.control.stall)
        await self.control.gate()

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        garble = self.control.garble
        if garble is not None and garble.matches(recorded):
            answer = await self._garbled(garble, scope, replay)
            await answer(scope, replay, send)
            return
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

    async def _garbled(self, garble: Garble, scope: Scope, receive: Receive) -> Response:
        status, media_type, body = 200, "application/json", TRUNCATED_JSON
        if garble.acted:
            status, media_type, body = await self._answer_of(scope, receive)
        if garble.kind == "html":
            return Response(HTML_PAGE, status_code=200, media_type="text/html")
        if garble.kind == "garbage":
            return Response(GARBAGE, status_code=200, media_type="application/json")
        if garble.kind == "502":
            return Response(BAD_GATEWAY_PAGE, status_code=502, media_type="text/html")
        return Response(body[: len(body) // 2], status_code=status, media_type=media_type)

    async def _answer_of(self, scope: Scope, receive: Receive) -> tuple[int, str, bytes]:
        """Let the sandbox act on the request; keep its answer (status, type, body) here."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        media_type = headers.get("content-type", "application/octet-stream")
        return int(start.get("status", 200)), media_type, b"".join(chunks)
