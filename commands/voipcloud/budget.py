"""The portal's request budget: a sliding window shared by every call of one client.

VoIPcloud publishes a budget of about 100 requests per 15 minutes. The client spends one slot
before each request. Interactive commands do not wait: when the window is full they get
`BudgetSpent`, saying when it refills. Long jobs (reports) `acquire(wait=True)` and can show their
expected finish with `eta(n)`.

One slot per call: the retries `ProviderHTTP` makes for a failing read (timeouts, 429, 5xx,
with backoff) are not counted again. The budget lives in this process until `share(shared)`
(the bot does it on PostgreSQL): then every slot is taken in the token's one window in
`SharedLimits`, so replicas on one token spend one budget between them. `available` and `eta`
read the window as last seen (`refresh` reads it again).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from commands.base import CommandError
from commands.limits import LimitKind, SharedLimits, limit_key

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

_RATE = re.compile(r"^(\d+)\s*/\s*(\d*)\s*(s|sec|m|min|h)$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RateLimit:
    """At most `requests` requests in any `window`."""

    requests: int
    window: timedelta

    @classmethod
    def parse(cls, text: str) -> RateLimit | None:
        """`100/15m`, `10/1m`, `5/30s`, `1000/1h`; `off` means no limit (None)."""
        raw = text.strip()
        if raw.lower() == "off":
            return None
        match = _RATE.match(raw)
        if match is None:
            raise ValueError(
                f"'{raw}' is not a rate limit: use requests/window such as 100/15m, 10/1m or "
                "5/30s, or off"
            )
        requests = int(match.group(1))
        count = int(match.group(2) or "1")
        if requests <= 0 or count <= 0:
            raise ValueError(f"'{raw}' is not a rate limit: both numbers must be above zero")
        seconds = count * _UNIT_SECONDS[match.group(3).lower()]
        return cls(requests, timedelta(seconds=seconds))

    def __str__(self) -> str:
        return f"{self.requests} per {_span(self.window)}"

    def longest(self, n_requests: int) -> timedelta:
        """The longest `n_requests` can wait for their turn, whatever the window holds when
        they begin (if nobody else spends meanwhile): found full, the i-th request goes
        `ceil(i / requests)` windows later, so the last one `ceil(n / requests)` windows later.
        100 per 15 min: 500 requests within 75 min."""
        if n_requests <= 0:
            return timedelta(0)
        return self.window * math.ceil(n_requests / self.requests)


DEFAULT_RATE_LIMIT = RateLimit(100, timedelta(minutes=15))


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _wait_words(wait: timedelta) -> str:
    seconds = wait.total_seconds()
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))} s"
    return f"{math.ceil(seconds / 60)} min"


class BudgetSpent(CommandError):
    """The window is full; `ready_at` (UTC) is when the next request may go."""

    def __init__(
        self, provider: str, limit: RateLimit, *, now: datetime, ready_at: datetime
    ) -> None:
        self.ready_at = ready_at
        super().__init__(
            f"The {provider} request budget ({limit}) is spent; it refills in "
            f"{_wait_words(ready_at - now)} (at {ready_at.astimezone(UTC):%H:%M} UTC). "
            "Try again then."
        )


class RateBudget:
    """A sliding-window log of the requests sent in the last `limit.window`.

    `limit=None` means unlimited. The clock returns aware datetimes; `sleep` is awaited while
    waiting for a slot, so tests drive both without sleeping. `key` names the budget's window
    when shared (`limit_key` of the token).
    """

    kind: LimitKind = "budget"

    def __init__(
        self,
        limit: RateLimit | None,
        *,
        provider: str,
        key: str | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.provider = provider
        self.key = key or limit_key(provider, "")
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[datetime] = deque()
        self._shared: SharedLimits | None = None

    def share(self, shared: SharedLimits) -> None:
        self._shared = shared

    def level(self) -> int | None:
        return self.available()

    async def refresh(self) -> None:
        if self._shared is not None and self.limit is not None:
            now = self.clock()
            sent = await self._shared.slots(self.key, window=self.limit.window, now=now)
            self._sent = deque(sent)

    def available(self) -> int | None:
        """Requests that may go right now (None: no limit)."""
        if self.limit is None:
            return None
        self._forget(self.clock())
        return self.limit.requests - len(self._sent)

    def try_take(self) -> bool:
        if self.limit is None:
            return True
        now = self.clock()
        self._forget(now)
        if len(self._sent) < self.limit.requests:
            self._sent.append(now)
            return True
        return False

    def ready_at(self) -> datetime:
        """When the next request may go."""
        return self.eta(1)

    async def acquire(self, *, wait: bool = True) -> None:
        """Take one slot; wait for it, or raise `BudgetSpent` when `wait` is false."""
        while not await self._take():
            assert self.limit is not None  # an unlimited budget always has a slot
            now = self.clock()
            ready = self.ready_at()
            if not wait:
                raise BudgetSpent(self.provider, self.limit, now=now, ready_at=ready)
            await self.sleep(max(0.0, (ready - now).total_seconds()))

    async def _take(self) -> bool:
        if self._shared is None or self.limit is None:
            return self.try_take()
        taken, sent = await self._shared.take(
            self.key,
            requests=self.limit.requests,
            window=self.limit.window,
            now=self.clock(),
        )
        self._sent = deque(sent)
        return taken

    def eta(self, n_requests: int) -> datetime:
        """When the last of `n_requests` more requests can start, if they go as soon as allowed."""
        now = self.clock()
        if self.limit is None or n_requests <= 0:
            return now
        self._forget(now)
        k, window = self.limit.requests, self.limit.window
        sent = list(self._sent)
        start = now
        for _ in range(n_requests):
            if len(sent) >= k:
                start = max(start, sent[-k] + window)
            sent.append(start)
        return start

    def _forget(self, now: datetime) -> None:
        assert self.limit is not None
        while self._sent and self._sent[0] + self.limit.window <= now:
            self._sent.popleft()
