"""`ConsoleSurface`: where one console command's answers go — the console's screen."""

from __future__ import annotations

from typing import Any, Protocol

from bot.console.forms import Forms
from bot.console.screen import Transcript
from bot.mrkdwn import Names
from bot.surface import MessageRef
from commands.base import Command, Form, Reply


class Console(Protocol):
    """What a surface needs of the console (`bot.console.app.Console`)."""

    interactive: bool
    names: Names
    transcript: Transcript
    forms: Forms

    def next_ts(self) -> str: ...

    def remember(self, channel: str, ts: str) -> str: ...

    def message_label(self, channel: str, ts: str) -> str | None: ...

    def show_reply(self, reply: Reply, header: str) -> None: ...


class ConsoleSurface:
    """Where one command's answers go: the screen (posts numbered, updates named)."""

    def __init__(self, console: Console, *, channel: str, user: str, number: int = 0) -> None:
        self.console = console
        self.channel = channel
        self.user = user
        self.number = number

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        if reply.private:
            self.console.show_reply(reply, "only you see this")
            return None
        ts = self.console.next_ts()
        label = self.console.remember(self.channel, ts)
        self.console.show_reply(reply, f"{self.console.names.channel(self.channel)} · {label}")
        return MessageRef(self.channel, ts)

    async def private(self, text: str) -> None:
        self.console.transcript.note(text)

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        found = self.console.message_label(ref.channel, ref.ts) if ref else None
        label = found or "a message from an earlier run"
        self.console.show_reply(reply, f"{label}, updated")

    async def open_form(self, command: Command[Any, Any], form: Form) -> bool:
        if not self.console.interactive:
            return False
        await self.console.forms.fill(
            command, form, user=self.user, channel=self.channel, surface=self
        )
        return True
