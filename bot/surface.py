"""Where one invocation's answers go: the `Surface` protocol and what wraps it.

Dispatch, the approval flow and the schedules talk only to this protocol, so the Slack adapter
(`bot.slack.surface.SlackSurface`) and the terminal (`bot.console.surface.ConsoleSurface`) share
every rule about what is private, what is posted, updated or uploaded.

    Surface            the protocol: send, private, update, open_form
    SurfaceWrapper     the one base for surfaces that change one thing and pass the rest on
      └ guarded(...)   never raises: what cannot be shown is logged with a reference
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import logged_reference
from commands.base import Command, Form, Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageRef:
    channel: str
    ts: str


class Surface(Protocol):
    """Where one invocation's answers go."""

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        """Post to the channel (or privately when `reply.private`); upload its files. `key`
        names the message for later updates; the ref is None until it has landed."""
        ...

    async def private(self, text: str) -> None:
        """A note only the requester sees."""
        ...

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        """Replace a posted message: the one `key` names, else the one at `ref`."""
        ...

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        """Show the command's form; False if this surface cannot."""
        ...


class SurfaceWrapper:
    """A surface that passes everything on to `inner`; subclasses change only what they must.
    Forms are not passed on: a wrapped surface (a card's channel, a scheduled post) has nobody
    to fill one in."""

    def __init__(self, inner: Surface) -> None:
        self.inner = inner
        self.channel: str | None = getattr(inner, "channel", None)

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        return await self.inner.send(reply, key=key)

    async def private(self, text: str) -> None:
        await self.inner.private(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        await self.inner.update(ref, reply, key=key)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        return False


class _Guarded(SurfaceWrapper):
    """A surface that never raises: what it cannot show is logged with a reference.

    Whatever a surface does (Slack, the terminal, a test double), a failure to show something
    must not undo or stop what was done; dispatch and the approval flow talk only to these."""

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        try:
            return await self.inner.send(reply, key=key)
        except Exception:
            _failed("send")
            return None

    async def private(self, text: str) -> None:
        try:
            await self.inner.private(text)
        except Exception:
            _failed("private note")

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        try:
            await self.inner.update(ref, reply, key=key)
        except Exception:
            _failed("update")

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        try:
            return await self.inner.open_form(command, form)
        except Exception:
            _failed("form")
            return False


def guarded(surface: Surface) -> Surface:
    return surface if isinstance(surface, _Guarded) else _Guarded(surface)


def _failed(what: str) -> None:
    logged_reference(log, f"showing a {what} failed")


class Headed(SurfaceWrapper):
    """Prefixes the first message a surface sends with a reply's own text (reminders)."""

    def __init__(self, inner: Surface, head: Reply) -> None:
        super().__init__(inner)
        self.head = head

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        merged = Reply(
            text=self.head.text,
            sections=[*self.head.sections, reply.text, *reply.sections],
            fields=[*self.head.fields, *reply.fields],
            table=self.head.table or reply.table,
            buttons=[*reply.buttons],
            files=[*self.head.files, *reply.files],
            private=reply.private,
            metadata=reply.metadata,
        )
        return await self.inner.send(merged, key=key)
