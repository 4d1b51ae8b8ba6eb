"""A progress bar posted once and updated in place, at most once a second."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from bot import messages
from bot.surface import MessageRef, Surface
from commands.base import Reply


class ProgressMessage:
    def __init__(self, surface: Surface, name: str, clock: Callable[[], float] = time.monotonic):
        self.surface = surface
        self.name = name
        self.clock = clock
        self.key = f"progress:{uuid.uuid4().hex}"
        self.ref: MessageRef | None = None
        self.last = 0.0
        self.started = False

    async def update(self, done: int, total: int, label: str) -> None:
        now = self.clock()
        final = done >= total
        if self.started and not final and now - self.last < 1.0:
            return
        reply = Reply(text=messages.progress_bar(self.name, done, total, label))
        if not self.started:
            self.started = True
            self.ref = await self.surface.send(reply, key=self.key)
        else:
            await self.surface.update(self.ref, reply, key=self.key)
        self.last = now
