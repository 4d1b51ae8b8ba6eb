"""What every provider sandbox shares: a request log and switches to stall or fail.

A sandbox is a Starlette app that behaves as the provider's documents say. The console and unit
tests reach it in-process through `httpx.ASGITransport`; end-to-end tests serve it on a loopback
port. `SandboxControl` lets a test make it slow or broken and see what it was asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class Sandbox(Protocol):
    """What a provider sandbox offers the console and the tests."""

    control: SandboxControl

    def app(self) -> ASGIApp: ...


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class SandboxControl:
    """Shared switches. `stall` delays every answer; `fail_status` answers every request with it;
    `drop` closes the connection without answering (a lost reply)."""

    stall: float = 0.0
    fail_status: int | None = None
    drop: bool = False
    requests: list[Recorded] = field(default_factory=list)

    def reset(self) -> None:
        self.stall = 0.0
        self.fail_status = None
        self.drop = False
        self.requests.clear()


class ControlMiddleware:
    def __init__(self, app: ASGIApp, control: SandboxControl) -> None:
        self.app = app
        self.control = control

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
        await self.app(scope, replay, send)
