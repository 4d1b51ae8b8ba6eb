"""The one-request-a-minute rule: a FIFO line per SMSC account.

SMSC answers error 9 to a second invoice or act request from the same login within a minute.
The long-lived client owns one `DocumentQueue` for its login: requests run one at a time, in
arrival order, each starting at least `spacing` seconds after the previous one finished. A
caller that has to wait is told its place and expected wait, and told again when its turn comes.

`clock` and `sleep` are injectable so tests move time without sleeping.

Replicas on one login: `share(shared)` (the bot does it on PostgreSQL) makes every request also
take the login's turn in `SharedLimits`, which spaces requests from all processes the same way.
The place and wait told to a caller count this process's line only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from commands.base import Notify
from commands.limits import LimitKind, SharedLimits, limit_key

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")

MINUTE = 60.0
# Measured from the end of the previous request, plus a second in case SMSC compares
# whole-second timestamps.
SPACING = MINUTE + 1.0


class DocumentQueue:
    kind: LimitKind = "queue"

    def __init__(
        self,
        *,
        account: str,
        spacing: float = SPACING,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.account = account
        self.spacing = spacing
        self._clock = clock
        self._sleep = sleep
        self._line: deque[asyncio.Event] = deque()  # the head is running or about to run
        self._running = False
        self._last_done: float | None = None
        self.key = limit_key("smsc", account)
        self._shared: SharedLimits | None = None

    def __len__(self) -> int:
        return len(self._line)

    def level(self) -> int:
        return len(self._line)

    async def refresh(self) -> None:
        return None

    def share(self, shared: SharedLimits) -> None:
        self._shared = shared

    def _turn(self) -> AbstractAsyncContextManager[None]:
        if self._shared is None:
            return contextlib.nullcontext()
        return self._shared.turn(self.key, self.spacing)

    async def run(self, call: Callable[[], Awaitable[T]], *, notify: Notify | None = None) -> T:
        """Wait for this caller's turn, then `call()`; the next caller starts `spacing` later."""
        turn = asyncio.Event()
        self._line.append(turn)
        ahead = len(self._line) - 1
        if ahead == 0:
            turn.set()
        told = False
        try:
            wait = self.expected_wait(ahead)
            if wait > 0 and notify is not None:
                await notify(waiting_text(self.account, ahead=ahead, wait=wait))
                told = True
            await turn.wait()
            delay = self._ready_at() - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self._running = True
            try:
                async with self._turn():
                    if told and notify is not None:
                        await notify(turn_text(self.account))
                    return await call()
            finally:
                self._running = False
                self._last_done = self._clock()
        finally:
            self._leave(turn)

    def expected_wait(self, ahead: int) -> float:
        """Seconds until the caller with `ahead` requests before it may start (a lower bound)."""
        now = self._clock()
        if self._running:
            # The head is with SMSC: assume it finishes now; each one after it takes a slot.
            start = now + self.spacing * ahead
        else:
            start = max(now, self._ready_at()) + self.spacing * ahead
        return start - now

    def _ready_at(self) -> float:
        return -math.inf if self._last_done is None else self._last_done + self.spacing

    def _leave(self, turn: asyncio.Event) -> None:
        if self._line and self._line[0] is turn:
            self._line.popleft()
            if self._line:
                self._line[0].set()
        else:
            self._line.remove(turn)  # gave up (cancelled) while waiting


def waiting_text(account: str, *, ahead: int, wait: float) -> str:
    before = "you are next" if ahead == 0 else f"{ahead} ahead of you"
    return (
        f"SMSC takes one document request a minute for account {account}, so yours is queued: "
        f"place {ahead + 1} ({before}), expected wait about {duration(wait)}."
    )


def turn_text(account: str) -> str:
    return f"Your turn in the SMSC queue for account {account}: sending the request now."


def duration(seconds: float) -> str:
    total = max(1, math.ceil(seconds))
    minutes, rest = divmod(total, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
