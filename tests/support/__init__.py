"""Helpers shared by the test suites.

This module holds what tests of the bot itself use: a surface that records what the bot says, a
clock moved by hand, a provider's sandbox behind a dispatcher. Its submodules hold the rest:
`slack_api`, `socket_mode`, `signing` and `blockkit` (the Slack doubles), `server` (serving an app
on loopback), `e2e` (the whole bot over loopback), `processes` (`billing-bot` as processes), and
one per provider or feature for its tests (`activeplatform`, `smsc`, `voipcloud`, `reports`), and
`drill` (a provider that exists only in the tests, behind the approval and recovery tests).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.catalog import ProviderRuntime
from bot.runtime import Runtime
from bot.storage.store import approvals
from bot.surface import MessageRef
from commands.base import Command, Form, Reply


@dataclass
class RecordingSurface:
    """Stands in for Slack or the console and keeps every answer for assertions."""

    channel: str = "C1"
    user: str = "U1"
    sent: list[Reply] = field(default_factory=list)
    privates: list[str] = field(default_factory=list)
    updates: list[tuple[MessageRef | None, Reply]] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)
    form_specs: list[Form] = field(default_factory=list)  # what each form asked and carried
    keys: list[str | None] = field(default_factory=list)  # each send's and update's outbox key
    form_support: bool = False
    _ts: int = 0

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        self.sent.append(reply)
        self.keys.append(key)
        if reply.private:
            return None
        self._ts += 1
        return MessageRef(self.channel, f"{self._ts}.0001")

    async def private(self, text: str) -> None:
        self.privates.append(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        self.updates.append((ref, reply))
        self.keys.append(key)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        self.forms.append(command.path)
        self.form_specs.append(form)
        return self.form_support

    def texts(self) -> str:
        """Everything shown to anyone, as one string (for leak scans and assertions)."""
        parts: list[str] = [*self.privates]
        for reply in [*self.sent, *(r for _, r in self.updates)]:
            parts += [reply.text, *reply.sections, *(f"{k} {v}" for k, v in reply.fields)]
            if reply.table:
                parts += [" ".join(row) for row in reply.table.rows]
            parts += [b.label + " " + b.command for b in reply.buttons]
            parts += [f.filename + " " + f.title for f in reply.files]
        return "\n".join(parts)


class Clock:
    """A clock moved by hand, for the bot and every replica sharing its database."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def move_on_disk(
    engine: AsyncEngine, approval_id: int, there_and_back: tuple[str, str] = ("expired", "pending")
) -> None:
    """Rewrite a row's status there and back: PostgreSQL then keeps its new version somewhere
    else on disk and in the status index, so only an ORDER BY lists it in its place."""
    for status in there_and_back:
        async with engine.begin() as conn:
            query = approvals.update().where(approvals.c.id == approval_id)
            await conn.execute(query.values(status=status))


def sandbox_of(runtime: Runtime, name: str) -> Any:
    found: ProviderRuntime | None = runtime.catalog.runtime(name)
    assert found is not None and found.sandbox is not None
    return found.sandbox


# What the `open_bot` fixture (tests/conftest.py) gives: opens a bot on sandboxes with roles.
OpenBot = Callable[..., Awaitable[Runtime]]
