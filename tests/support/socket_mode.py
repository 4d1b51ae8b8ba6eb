"""A loopback double of Slack's Socket Mode: the WebSocket end of `apps.connections.open`.

    async with serve_slack_double() as slack, serve_socket_mode_double(slack) as socket:
        ...start the app with SLACK_API_URL=slack.url and SLACK_APP_TOKEN=APP_TOKEN...
        await socket.wait_connected()
        envelope_id = await socket.push_slash_command("/billing", "status", response_url=...)
        ack = await socket.wait_for_ack(envelope_id)

Once attached, `apps.connections.open` on the Web API double (called with the app token) returns
`ws://127.0.0.1:<port>/link/?ticket=…`. A client that connects with a ticket it was issued gets
Slack's `hello`; the test then pushes envelopes (`slash_commands`, `interactive`, `events_api`)
and reads the acknowledgements the client sends back (`{"envelope_id": …, "payload": …}`).
`disconnect()` sends Slack's `disconnect` message, after which a client fetches a new URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.support.signing import slash_command_fields
from tests.support.slack_api import APP_ID, SlackApiDouble

POLL = 0.01


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None


@dataclass
class SocketModeDouble:
    app_id: str = APP_ID
    base_url: str = ""
    tickets: set[str] = field(default_factory=set)
    connections: list[ServerConnection] = field(default_factory=list)
    hellos: int = 0
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def issue_url(self) -> str:
        """A fresh WebSocket URL, as `apps.connections.open` returns it."""
        ticket = f"{next(self._serial):08d}-{uuid.uuid4().hex[:8]}"
        self.tickets.add(ticket)
        return f"{self.base_url}/link/?ticket={ticket}&app_id={self.app_id}"

    async def wait_connected(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until `count` connections in all have been greeted with `hello`."""
        await _until(lambda: self.hellos >= count, timeout, f"{count} Socket Mode connection(s)")

    async def push(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Send an envelope over the newest open connection; return its envelope_id."""
        connection = self._current()
        if accepts_response_payload is None:
            # Slack accepts a payload in the ack for commands, submissions and suggestions.
            accepts_response_payload = kind == "slash_commands" or payload.get("type") in (
                "view_submission",
                "block_suggestion",
            )
        envelope_id = str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        if kind == "events_api":
            envelope.update({"retry_attempt": 0, "retry_reason": ""})
        self.envelopes.append(envelope)
        await connection.send(json.dumps(envelope))
        return envelope_id

    async def push_slash_command(self, command: str, text: str, **fields: Any) -> str:
        """Push a slash command; `fields` are those of `signing.slash_command_fields`."""
        return await self.push("slash_commands", slash_command_fields(command, text, **fields))

    async def push_interactive(self, payload: dict[str, Any]) -> str:
        """Push a `block_actions` or `view_submission` payload (see `signing`)."""
        return await self.push("interactive", payload)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        await _until(
            lambda: any(a.envelope_id == envelope_id for a in self.acks),
            timeout,
            f"an ack of envelope {envelope_id}",
        )
        return next(a for a in self.acks if a.envelope_id == envelope_id)

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before it retires a connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-test"}}
        await self._current().send(json.dumps(message))

    def _current(self) -> ServerConnection:
        if not self.connections:
            raise AssertionError("no Socket Mode client is connected")
        return self.connections[-1]

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        if url.path.rstrip("/") != "/link" or ticket not in self.tickets:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket\n")
        return None

    async def _session(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        try:
            hello = {
                "type": "hello",
                "num_connections": len(self.connections),
                "debug_info": {
                    "host": "applink-test",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
            await connection.send(json.dumps(hello))
            self.hellos += 1
            async for raw in connection:
                message = json.loads(raw)
                self.received.append(message)
                if isinstance(message, dict) and "envelope_id" in message:
                    self.acks.append(Ack(message["envelope_id"], message.get("payload")))
        except ConnectionClosed:
            pass
        finally:
            self.connections.remove(connection)


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"expected {what} within {timeout} s")
        await asyncio.sleep(POLL)


@contextlib.asynccontextmanager
async def serve_socket_mode_double(slack: SlackApiDouble) -> AsyncIterator[SocketModeDouble]:
    """Serve a Socket Mode double on a loopback port and attach it to `slack`.

    It runs on the test's event loop; close the client under test before leaving the block.
    """
    double = SocketModeDouble()
    server: Server = await serve(
        double._session, "127.0.0.1", 0, process_request=double._check_ticket
    )
    port = server.sockets[0].getsockname()[1]
    double.base_url = f"ws://127.0.0.1:{port}"
    slack.socket_mode = double
    try:
        yield double
    finally:
        slack.socket_mode = None
        server.close()
        await server.wait_closed()
