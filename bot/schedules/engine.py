"""Schedules from the store, fired by the leader only, each due run at most once.

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
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.audit import AuditLog, Entry
from bot.storage.store import is_sqlite, schedules, utcnow

log = logging.getLogger(__name__)

LOCK_KEY = 7_402_118_311  # arbitrary, fixed: "billing-bot scheduler"

# Every schedule posts to the channel (a report, a reminder): at most one run an hour.
MIN_INTERVAL = timedelta(hours=1)
# An expression with no run this far ahead never runs: 29 February can be eight years from the
# next (2096, then 2104), so ten years tell "rarely" from "never".
HORIZON = timedelta(days=3653)
_ANY_HOUR = datetime(2001, 1, 1, tzinfo=ZoneInfo("UTC"))


def cron_trigger(expression: str, tz: ZoneInfo, *, until: datetime | None = None) -> CronTrigger:
    """A 5-field crontab in the team's zone; ValueError with a readable reason otherwise.
    `until` ends the search for a next run there (APScheduler's `end_date`)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"'{expression}' is not a cron expression: it needs 5 fields "
            '(minute hour day-of-month month day-of-week), like "0 9 1 * *"'
        )
    minute, hour, day, month, day_of_week = fields
    try:
        trigger: CronTrigger = CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_weekdays(day_of_week),
            timezone=tz,
            end_date=until,
        )
    except ValueError as exc:
        raise ValueError(f"'{expression}' is not a valid cron expression ({exc})") from None
    return trigger


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_weekdays(field: str) -> str:
    """Crontab counts weekdays from Sunday = 0 (7 too); APScheduler 3 from Monday = 0, and its
    `from_crontab` does not translate. Names mean the same to both, so numbers become names."""
    parts = []
    for part in field.split(","):
        span, slash, step = part.partition("/")
        named = re.sub(r"\d+", lambda m: _weekday(m.group()), span)
        parts.append(named + slash + step)
    return ",".join(parts)


def _weekday(number: str) -> str:
    index = int(number)
    if index > 7:
        raise ValueError(f"day of week {index} is not 0-7")
    return _WEEKDAYS[index]


def next_run(expression: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    fire: datetime | None = cron_trigger(expression, tz).get_next_fire_time(None, after)
    return fire


def shortest_gap(
    expression: str, tz: ZoneInfo, after: datetime, runs: int = 60
) -> timedelta | None:
    """The shortest time between two of the cron's next `runs` runs (None: it runs once or
    never). Sixty runs cover every pattern a schedule may have within a day, week or month."""
    trigger = cron_trigger(expression, tz)
    fire: datetime | None = trigger.get_next_fire_time(None, after)
    shortest: timedelta | None = None
    for _ in range(runs):
        if fire is None:
            break
        following: datetime | None = trigger.get_next_fire_time(fire, fire)
        if following is None:
            break
        gap = following.astimezone(UTC) - fire.astimezone(UTC)  # elapsed, across DST too
        shortest = gap if shortest is None else min(shortest, gap)
        fire = following
    return shortest


def check_schedule_cron(expression: str, *, now: datetime) -> None:
    """Refuse, with a sentence, a valid crontab that cannot serve as a schedule: one that never
    runs (`0 9 31 2 *`) and one that runs more than once an hour (`* * * * *`)."""
    utc = ZoneInfo("UTC")
    bounded = cron_trigger(expression, utc, until=now + HORIZON)
    if bounded.get_next_fire_time(None, now) is None:
        raise ValueError(
            f"'{expression}' never runs: no date matches its day and month; pick a day the "
            'month has, like "0 9 28 2 *"'
        )
    # Runs an hour apart at the least exactly when the minute field names one minute: try
    # that field alone over one hour.
    minutes = CronTrigger(minute=expression.split()[0], timezone=utc)
    runs, fire = 0, minutes.get_next_fire_time(None, _ANY_HOUR)
    while fire is not None and fire - _ANY_HOUR < MIN_INTERVAL:
        runs += 1
        fire = minutes.get_next_fire_time(fire, fire + timedelta(seconds=1))
    if runs > 1:
        raise ValueError(
            f"'{expression}' runs {runs} times an hour; a schedule posts to the channel, so it "
            'may run at most once an hour: give one minute, like "0 * * * *" or "0 9 * * *"'
        )


@dataclass(frozen=True, kw_only=True)
class Schedule:
    id: int
    kind: str
    cron: str
    args: dict[str, str]
    channel: str
    created_by: str
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        data = dict(row)
        data["args"] = json.loads(data["args"])
        for key in ("created_at", "updated_at"):
            data.pop(key, None)
        return cls(**data)


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
        engine: AsyncEngine,
        *,
        tz: ZoneInfo,
        run: Runner,
        audit: AuditLog,
        grace: timedelta = timedelta(hours=6),
        tick_every: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
        lead: LeadTime = no_lead,
    ) -> None:
        self.engine = engine
        self.tz = tz
        self.run = run
        self.lead = lead
        self.audit = audit
        self.grace = grace
        self.tick_every = tick_every
        self.clock = clock
        self.leader = Leader(engine)
        self._aps: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        self.last_tick: float | None = None
        self._running: dict[int, asyncio.Task[int]] = {}  # schedule id → its run in progress

    # --- the store ---------------------------------------------------------------------------

    async def add(
        self, *, kind: str, cron: str, args: dict[str, str], channel: str, created_by: str
    ) -> Schedule:
        now = self.clock()
        values = {
            "kind": kind,
            "cron": cron,
            "args": json.dumps(args, sort_keys=True),
            "channel": channel,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
            "paused": False,
            "next_run_at": next_run(cron, self.tz, now),
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(schedules.insert().values(**values))
            new_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
        found = await self.get(new_id)
        assert found is not None
        return found

    async def get(self, schedule_id: int) -> Schedule | None:
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)))
                .mappings()
                .first()
            )
        return Schedule.from_row(row) if row else None

    async def all(self) -> list[Schedule]:
        async with self.engine.connect() as conn:
            rows = (
                (await conn.execute(sa.select(schedules).order_by(schedules.c.id))).mappings().all()
            )
        return [Schedule.from_row(r) for r in rows]

    async def remove(self, schedule_id: int) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(schedules.delete().where(schedules.c.id == schedule_id))
        return bool(result.rowcount)

    async def set_paused(self, schedule_id: int, paused: bool) -> Schedule | None:
        row = await self.get(schedule_id)
        if row is None:
            return None
        now = self.clock()
        next_at = None if paused else next_run(row.cron, self.tz, now)
        async with self.engine.begin() as conn:
            await conn.execute(
                schedules.update()
                .where(schedules.c.id == schedule_id)
                .values(paused=paused, next_run_at=next_at, updated_at=now)
            )
        return await self.get(schedule_id)

    def regular_run(self, schedule: Schedule) -> datetime | None:
        """The cron's own next run, whatever a snooze added before it."""
        return None if schedule.paused else next_run(schedule.cron, self.tz, self.clock())

    async def asked_again(self, schedule_id: int, hours: int) -> datetime | None:
        """When a reminder snoozed now for `hours` is asked again: then, or sooner when the
        cron's next regular run comes first. None when the schedule is gone or paused."""
        schedule = await self.get(schedule_id)
        if schedule is None or schedule.paused:
            return None
        now = self.clock()
        again = now + timedelta(hours=hours)
        regular = next_run(schedule.cron, self.tz, now)
        return regular if regular is not None and regular <= again else again

    async def postpone(self, schedule_id: int, hours: int) -> None:
        """Ask again in `hours` (a snoozed reminder) and keep the cron: the extra run comes
        first, and the one after it is the cron's next regular run, not moved. When a regular
        run is due sooner than that, it asks again itself and nothing is added."""
        schedule = await self.get(schedule_id)
        if schedule is None or schedule.paused:
            return
        now = self.clock()
        again = now + timedelta(hours=hours)
        regular = next_run(schedule.cron, self.tz, now)
        if regular is not None and regular <= again:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                schedules.update()
                .where(schedules.c.id == schedule_id, schedules.c.paused.is_(False))
                .values(next_run_at=again, updated_at=now)
            )

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
            except Exception:
                log.exception("leader election failed")
                return 0
            now = self.clock()
            async with self.engine.connect() as conn:
                rows = (
                    (
                        await conn.execute(
                            sa.select(schedules).where(
                                schedules.c.paused.is_(False),
                                schedules.c.next_run_at.is_not(None),
                            )
                        )
                    )
                    .mappings()
                    .all()
                )
            started: list[asyncio.Task[int]] = []
            for schedule in (Schedule.from_row(r) for r in rows):
                # A run still going here (it started early and waits to post) keeps the next
                # one waiting: two runs of one report would share one budget and both be late.
                if schedule.id in self._running or not self._due(schedule, now):
                    continue
                if await self._claim(schedule, now):
                    started.append(self._start(schedule, now))
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

    async def _claim(self, schedule: Schedule, now: datetime) -> bool:
        """Advance next_run_at from the value we saw; whoever changes it owns this run. The
        following run is the cron's first after both now and this run's time (which is later
        than now when the run starts early)."""
        assert schedule.next_run_at is not None
        after = max(now, schedule.next_run_at + timedelta(microseconds=1))
        following = next_run(schedule.cron, self.tz, after)
        async with self.engine.begin() as conn:
            changed = (
                await conn.execute(
                    schedules.update()
                    .where(
                        schedules.c.id == schedule.id,
                        schedules.c.next_run_at == schedule.next_run_at,
                    )
                    .values(next_run_at=following, last_run_at=now, updated_at=now)
                )
            ).rowcount
        return changed == 1

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
            reference = uuid.uuid4().hex[:8]
            log.exception("schedule %s failed (reference %s)", schedule.id, reference)
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
            await self.tick(wait=False)

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
