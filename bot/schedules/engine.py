"""The engine: schedules from the store, fired by the leader only, each due run at most once.

The database is the source of truth: each schedule keeps its `next_run_at`. An APScheduler
`AsyncIOScheduler` ticks every few seconds; on the leader, a tick claims every due schedule by
one conditional UPDATE of `next_run_at` (so two leaders overlapping for a moment still fire a
run once) and runs it. A run missed while the bot was down fires once on start when it is
less than `grace` late, otherwise it is recorded as missed. Cron runs in `BILLING_TIMEZONE`.

Lead time: a kind may need time before its time (a balance report waiting for VoIPcloud's
request budget). `lead(schedule)` says how much; a tick claims the run that much early and the
runner posts its result at `next_run_at`, not before. `next_run_at` stays the cron's own time
(what `/billing schedules` shows and the audit's "due"): the lead is recomputed at every tick
rather than stored, since it follows from the schedule's arguments and the provider's settings
(no column to migrate, and a changed budget applies at once). Runs go on in tasks of their own,
so one that starts an hour early holds up neither the ticks nor the schedules due meanwhile.

Leadership: on PostgreSQL, the replica holding `pg_try_advisory_lock(LOCK_KEY)` on a dedicated
connection leads; when it dies its session ends, the lock frees, and another replica takes it
on its next attempt (every `elect_every` seconds). SQLite means one process: it always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import logged_reference
from bot.ops.database import UNWATCHED, HealthReports
from bot.schedules.store import Schedule, ScheduleStore
from bot.storage.audit import AuditLog, Entry
from bot.storage.store import is_sqlite, utcnow

log = logging.getLogger(__name__)

LOCK_KEY = 7_402_118_311  # arbitrary, fixed: "billing-bot scheduler"


class _TickStillRunning(logging.Filter):
    """Drops APScheduler's warning that a tick was skipped because the previous one is still
    running (apscheduler/schedulers/base.py, `_process_jobs`): ticks are coalesced on purpose
    (`max_instances=1`), the running tick claims whatever the skipped one would have, and on a
    busy machine the warning would otherwise fill the log with nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("_tick_job" in text and "maximum number of running instances" in text)


logging.getLogger("apscheduler.scheduler").addFilter(_TickStillRunning())


Runner = Callable[[Schedule, datetime | None], Any]
LeadTime = Callable[[Schedule], timedelta]


def no_lead(schedule: Schedule) -> timedelta:
    return timedelta(0)


class Leader:
    """Who fires schedules. Always this process on SQLite; an advisory lock on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.connection: AsyncConnection | None = None
        self.always = is_sqlite(engine)

    @property
    def is_leader(self) -> bool:
        return self.always or self.connection is not None

    async def elect(self) -> bool:
        if self.always:
            return True
        if self.connection is not None:
            try:
                await self.connection.execute(sa.text("SELECT 1"))
                return True
            except Exception:
                log.warning("lost the scheduler leader connection")
                await self._drop()
        connection = await self.engine.connect()
        try:
            got = (
                await connection.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}
                )
            ).scalar()
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if got:
            self.connection = connection
            log.info("this replica now fires schedules")
            return True
        await connection.close()
        return False

    async def _drop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
            self.connection = None

    async def resign(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY}
                )
            await self._drop()


class Scheduler:
    def __init__(
        self,
        store: ScheduleStore,
        *,
        run: Runner,
        audit: AuditLog,
        grace: timedelta = timedelta(hours=6),
        tick_every: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
        lead: LeadTime = no_lead,
        health: HealthReports = UNWATCHED,
    ) -> None:
        self.store = store
        self.health = health  # the ticks, reported (bot/ops/database.py)
        self.tz: ZoneInfo = store.tz
        self.run = run
        self.lead = lead
        self.audit = audit
        self.grace = grace
        self.tick_every = tick_every
        self.clock = clock
        self.leader = Leader(store.engine)
        self._aps: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        self.last_tick: float | None = None
        self._running: dict[int, asyncio.Task[int]] = {}  # schedule id → its run in progress

    # --- firing --------------------------------------------------------------------------------

    async def tick(self, *, wait: bool = True) -> int:
        """Fire every due schedule once, if this process leads: due when its time less its lead
        has come. Returns how many fired. Each run goes on in a task; `wait` returns when they
        are done (a tick by hand), the ticking job does not wait."""
        self.last_tick = time.monotonic()
        async with self._lock:
            try:
                if not await self.leader.elect():
                    return 0
            except Exception as exc:
                if not self.health.failed(exc, where="the scheduler"):
                    log.exception("leader election failed")
                return 0
            now = self.clock()
            due = await self.store.active()
            started: list[asyncio.Task[int]] = []
            for schedule in due:
                # A run still going here (it started early and waits to post) keeps the next
                # one waiting: two runs of one report would share one budget and both be late.
                if schedule.id in self._running or not self._due(schedule, now):
                    continue
                if await self.store.claim(schedule, now):
                    started.append(self._start(schedule, now))
        await self.health.ok(where="the scheduler")
        if not wait:
            return len(started)
        return sum(await asyncio.gather(*started))

    def _due(self, schedule: Schedule, now: datetime) -> bool:
        assert schedule.next_run_at is not None
        if schedule.next_run_at <= now:
            return True
        try:
            lead = self.lead(schedule)
        except Exception:  # its run says what is wrong, at its time; not a warning every tick
            log.debug("no lead time for schedule %s", schedule.id, exc_info=True)
            return False
        return schedule.next_run_at - lead <= now

    def _start(self, schedule: Schedule, now: datetime) -> asyncio.Task[int]:
        task = asyncio.create_task(self._fire(schedule, now), name=f"schedule {schedule.id}")
        self._running[schedule.id] = task
        task.add_done_callback(lambda _: self._running.pop(schedule.id, None))
        return task

    async def _fire(self, schedule: Schedule, now: datetime) -> int:
        due = schedule.next_run_at
        if due is not None and now - due > self.grace:
            await self.audit.record(
                Entry(
                    user_id=f"schedule:{schedule.id}",
                    channel=schedule.channel,
                    command=f"schedule {schedule.kind}",
                    args=schedule.args,
                    decision="missed",
                    outcome="skipped",
                    detail=f"due {due.isoformat()}, more than {self.grace} late",
                    provider="billing",
                )
            )
            return 0
        try:
            await self.run(schedule, due)
        except Exception as exc:
            reference = logged_reference(log, f"schedule {schedule.id} failed")
            # The run could not audit itself: record that it broke, so the audit log, the
            # metrics and the log all show this run.
            with contextlib.suppress(Exception):
                await self.audit.record(
                    Entry(
                        user_id=f"schedule:{schedule.id}",
                        channel=schedule.channel,
                        command=f"schedule {schedule.kind}",
                        args=schedule.args,
                        decision="scheduled run",
                        outcome="error",
                        detail=f"{type(exc).__name__}, reference {reference}",
                        provider="billing",
                    )
                )
        return 1

    async def fire_now(self, schedule: Schedule) -> None:
        await self.run(schedule, None)

    async def runs_done(self) -> None:
        """Wait until the runs in progress in this process have ended."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._aps = AsyncIOScheduler(timezone=self.tz)
        self._aps.add_job(
            self._tick_job,
            "interval",
            seconds=self.tick_every,
            next_run_time=datetime.now(self.tz),
            max_instances=1,
            coalesce=True,
            id="tick",
        )
        self._aps.start()

    async def _tick_job(self) -> None:
        """The ticking job. A tick cut short because the process is stopping is not an error
        (its reads and claim roll back with it): APScheduler would log it as one."""
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await self.tick(wait=False)
            except Exception as exc:  # the schedules' reads and claims, with the database away
                if not self.health.failed(exc, where="the scheduler"):
                    raise

    async def stop(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None
        running = list(self._running.values())
        for schedule_id, task in list(self._running.items()):
            # Claimed and under way: stopping ends it unfinished, as a crash would.
            log.warning("schedule %s was still running and stops unfinished", schedule_id)
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.leader.resign()

    def describe(self) -> str:
        if self._aps is None:
            return "not running in this process"
        role = "leader (fires schedules)" if self.leader.is_leader else "standby"
        return f"{role}; ticks every {self.tick_every:g} s"
