"""Whether the database can be used, as this process last found it: one place the background
loops (the scheduler, the outbox worker, the sweeper), the Slack listeners and `/readyz`
report into, so an outage is logged once and not once per tick.

    health.failed(exc, where="the outbox")   a database failure? (bot/storage/failures.py)
                                             then the database is down: True, nothing logged
                                             by the caller; anything else: False
    await health.ok(where="the outbox")      that worked; when the database was down, the
                                             write probe of /readyz (bot/ops/health.py) says
                                             whether it is back
    await health.check()                     /readyz: the probe, reported either way

Going down logs one WARNING with the reason and who saw it (no traceback: the reason is the
whole story); coming back logs one INFO with how long it was down and how many calls failed
meanwhile. `billing_database_up` follows (1, 0). Recovery is the write probe's to say, not any
success's: on a read-only SQLite file reads still work, and a loop that only read would
otherwise call it back at every round while every write fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from prometheus_client import Gauge

from bot.ops.health import UNREACHABLE
from bot.storage.failures import database_failure

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[str | None]]


class HealthReports(Protocol):
    """What the loops and the listeners report into, and read."""

    @property
    def down(self) -> bool: ...

    def failed(self, exc: BaseException, *, where: str) -> bool: ...

    async def ok(self, *, where: str) -> None: ...


class Unwatched:
    """Reports that go nowhere (services built without a runtime, in tests): no failure is
    taken for the database's, so callers log as they always did."""

    @property
    def down(self) -> bool:
        return False

    def failed(self, exc: BaseException, *, where: str) -> bool:
        return False

    async def ok(self, *, where: str) -> None:
        return None


UNWATCHED = Unwatched()


class DatabaseHealth:
    def __init__(
        self,
        probe: Probe,
        *,
        gauge: Gauge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.gauge = gauge
        self.clock = clock
        self.reason: str | None = None  # why it is down (None: up)
        self.failures = 0  # database failures reported since it went down
        self._since = 0.0
        self._reports = 0  # every failure ever reported: a probe older than one is stale
        self._show(up=True)

    @property
    def down(self) -> bool:
        return self.reason is not None

    def failed(self, exc: BaseException, *, where: str) -> bool:
        """True when `exc` says the database is away: it is noted (and logged if news)."""
        reason = database_failure(exc)
        if reason is None:
            return False
        self._went_down(reason, where)
        return True

    async def ok(self, *, where: str) -> None:
        """Something that uses the database worked; if it was down, is it back?"""
        if self.down:
            await self._probed(where)

    async def check(self) -> str | None:
        """The write probe, reported: None when the database takes writes, else the problem."""
        return await self._probed("/readyz")

    async def _probed(self, where: str) -> str | None:
        reports = self._reports
        try:
            problem = await self.probe()
        except Exception as exc:  # the probe's own failure says the same
            log.debug("the database probe failed", exc_info=True)
            problem = database_failure(exc) or UNREACHABLE
        if problem is not None:
            self._went_down(problem, where)
        elif self.down and reports == self._reports:
            self._came_back(where)
        return problem

    def _went_down(self, reason: str, where: str) -> None:
        self._reports += 1
        if self.down:
            self.failures += 1
            return
        self.reason, self.failures, self._since = reason, 1, self.clock()
        self._show(up=False)
        log.warning(
            "the database cannot be used (%s; seen by %s): requests are turned away, and "
            "told so, until it is back",
            reason,
            where,
        )

    def _came_back(self, where: str) -> None:
        took = self.clock() - self._since
        log.info(
            "the database is back (seen by %s) after %.0f s down; %d database calls failed "
            "meanwhile",
            where,
            took,
            self.failures,
        )
        self.reason, self.failures = None, 0
        self._show(up=True)

    def _show(self, *, up: bool) -> None:
        if self.gauge is not None:
            self.gauge.set(1 if up else 0)
