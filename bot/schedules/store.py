"""The schedules table: what is scheduled, and when each runs next.

`next_run_at` is the cron's own next time (what `/billing schedules` shows); a snoozed reminder
moves it once (`postpone`), and the engine advances it when it claims a run (`claim`, one
conditional UPDATE, so two leaders overlapping for a moment still fire a run once).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.schedules.cron import next_run
from bot.storage.store import schedules, utcnow


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


class ScheduleStore:
    def __init__(
        self, engine: AsyncEngine, *, tz: ZoneInfo, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine = engine
        self.tz = tz
        self.clock = clock

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

    async def active(self) -> list[Schedule]:
        """The schedules that fire: not paused, with a next run."""
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
        return [Schedule.from_row(r) for r in rows]

    async def claim(self, schedule: Schedule, now: datetime) -> bool:
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
