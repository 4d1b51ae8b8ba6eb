"""Shared pieces of the SMSC tests: a fake clock, a client wired to the sandbox, typed commands."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from commands import grammar
from commands.base import Context, Reply
from commands.smsc.client import SmscClient
from commands.smsc.commands import COMMANDS, SLASH
from commands.smsc.sandbox import (
    SANDBOX_BASE_URL,
    SANDBOX_LOGIN,
    SANDBOX_PASSWORD,
    SmscSandbox,
)


class FakeClock:
    """Monotonic seconds that move only when someone sleeps (or a test moves them)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


@dataclass
class Notes:
    """A `ctx.notify` that keeps what the requester was told."""

    texts: list[str] = field(default_factory=list)

    async def __call__(self, text: str) -> None:
        self.texts.append(text)


@dataclass
class Env:
    clock: FakeClock
    sandbox: SmscSandbox
    client: SmscClient
    notes: Notes

    @property
    def ctx(self) -> Context:
        return Context(user_id="U1", channel_id="C1", notify=self.notes)

    def client_for(self, *, password: str = SANDBOX_PASSWORD) -> SmscClient:
        """Another client on the same sandbox and clock, with its own queue."""
        return open_client(self.sandbox, self.clock, password=password)


def open_client(
    sandbox: SmscSandbox, clock: FakeClock, *, password: str = SANDBOX_PASSWORD
) -> SmscClient:
    return SmscClient.open(
        base_url=SANDBOX_BASE_URL,
        login=SANDBOX_LOGIN,
        password=password,
        transport=httpx.ASGITransport(app=sandbox.app()),
        clock=clock,
        sleep=clock.sleep,
    )


def make_env() -> Env:
    clock = FakeClock()
    sandbox = SmscSandbox(clock=clock)
    return Env(clock=clock, sandbox=sandbox, client=open_client(sandbox, clock), notes=Notes())


def mock_client(handler: httpx.MockTransport, clock: FakeClock | None = None) -> SmscClient:
    clock = clock or FakeClock()
    return SmscClient.open(
        base_url=SANDBOX_BASE_URL,
        login=SANDBOX_LOGIN,
        password=SANDBOX_PASSWORD,
        transport=handler,
        clock=clock,
        sleep=clock.sleep,
    )


async def run_typed(env: Env, text: str) -> Reply:
    """What the bot does with `/smsc <text>`: parse, validate, then call the handler."""
    parsed = grammar.parse(SLASH, text, COMMANDS)
    assert isinstance(parsed, grammar.Parsed)
    args = grammar.validate(parsed.command, parsed.values)
    return await parsed.command.handler(env.client, args, env.ctx)


def reply_texts(reply: Reply) -> list[str]:
    """Every piece of text a reply shows people, file names included."""
    texts = [reply.text, *reply.sections, reply.audit_note or ""]
    texts += [f"{name} {value}" for name, value in reply.fields]
    texts += [f"{b.label} {b.command}" for b in reply.buttons]
    texts += [f"{f.filename} {f.title}" for f in reply.files]
    if reply.table is not None:
        texts += [*reply.table.columns, *(cell for row in reply.table.rows for cell in row)]
    return texts
