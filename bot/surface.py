"""Where one invocation's answers go: the `Surface` protocol and what wraps it.

Dispatch, the approval flow and the schedules talk only to this protocol, so the Slack adapter
(`bot.slack.surface.SlackSurface`) and the terminal (`bot.console.surface.ConsoleSurface`) share
every rule about what is private, what is posted, updated or uploaded.

    Surface            the protocol: send, private, update, open_form
    SurfaceWrapper     the one base for surfaces that change one thing and pass the rest on
      └ guarded(...)   never raises: what cannot be shown is logged with a reference, except
                       the errors a caller lets through (`letting_through`) to act on them
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
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


_PASSING: ContextVar[tuple[type[BaseException], ...]] = ContextVar("passing", default=())


@contextlib.contextmanager
def letting_through(*errors: type[BaseException]) -> Iterator[None]:
    """Guarded surfaces raise `errors` in this block (this task's): a caller that must know an
    answer was not handed in (the database refused the outbox's row) lets them through."""
    token = _PASSING.set(errors)
    try:
        yield
    finally:
        _PASSING.reset(token)


def passes(exc: BaseException) -> bool:
    """Whether `exc` is one a caller lets through here (`letting_through`)."""
    return isinstance(exc, _PASSING.get())


class _Guarded(SurfaceWrapper):
    """A surface that never raises: what it cannot show is logged with a reference.

    Whatever a surface does (Slack, the terminal, a test double), a failure to show something
    must not undo or stop what was done; dispatch and the approval flow talk only to these."""

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        try:
            return await self.inner.send(reply, key=key)
        except Exception as exc:
            _failed("send", exc)
            return None

    async def private(self, text: str) -> None:
        try:
            await self.inner.private(text)
        except Exception as exc:
            _failed("private note", exc)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        try:
            await self.inner.update(ref, reply, key=key)
        except Exception as exc:
            _failed("update", exc)

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        try:
            return await self.inner.open_form(command, form)
        except Exception as exc:
            _failed("form", exc)
            return False


def guarded(surface: Surface) -> Surface:
    return surface if isinstance(surface, _Guarded) else _Guarded(surface)


def _failed(what: str, exc: Exception) -> None:
    if passes(exc):
        raise exc
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
