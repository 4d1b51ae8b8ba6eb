"""Lead time: a scheduled report that needs the request budget for a while says so when it is
added, starts that much before its time, and posts at its time, not before. Runs go on in tasks
of their own, so one that started early holds up no other schedule. Clocks are injected and
every wait moves them: nothing sleeps for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.config import Settings
from bot.runtime import Runtime, open_providers, open_runtime
from bot.schedules.cron import shortest_gap
from bot.schedules.engine import Scheduler
from bot.schedules.runs import ScheduleRuns
from bot.schedules.store import Schedule, ScheduleStore
from bot.storage import store
from bot.storage.store import audit
from bot.surface import MessageRef
from commands.base import Reply
from commands.voipcloud.budget import RateBudget, RateLimit
from commands.voipcloud.client import VoipcloudClient
from tests.support import RecordingSurface, sandbox_of
from tests.support.reports import accounts_text
from tests.support.voipcloud import Clock, Sleeps

UTC_ZONE = ZoneInfo("UTC")
NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)  # "0 9 * * *" after NOON
ACCOUNTS = accounts_text(10023, 10057)  # 35 accounts: at 10 a minute, up to 4 min of waits


OpenOnClock = Callable[..., Awaitable[Runtime]]


@pytest.fixture
async def open_on_clock(
    make_settings: Callable[..., Settings], database_url: str
) -> AsyncIterator[OpenOnClock]:
    """Opens bots as `open_bot` does (sandboxes; U0ADMIN admin), on the test's clock:
    `open_on_clock(clock, billing_channel=…)`. `surfaces` gives channels' own surfaces (the
    others are `RecordingSurface`s); keyword arguments override settings."""
    opened: list[Runtime] = []
    if not database_url.startswith("sqlite"):
        await store.upgrade(database_url)

    async def open_one(
        clock: Clock, *, surfaces: dict[str, RecordingSurface] | None = None, **overrides: Any
    ) -> Runtime:
        channels = {} if surfaces is None else surfaces

        def system_surface(channel: str) -> RecordingSurface:
            return channels.setdefault(channel, RecordingSurface(channel=channel, user=""))

        runtime = await open_runtime(
            make_settings(**overrides),
            system_surface=system_surface,
            runtimes=open_providers(use_sandboxes=True),
            working_after=5.0,
            clock=clock,
        )
        opened.append(runtime)
        return runtime

    try:
        yield open_one
    finally:
        for runtime in opened:
            await runtime.close()


def voipcloud(runtime: Runtime) -> VoipcloudClient:
    found = runtime.catalog.runtime("voipcloud")
    assert found is not None and isinstance(found.client, VoipcloudClient)
    return found.client


def use_budget(runtime: Runtime, limit: str, clock: Clock) -> Sleeps:
    """Give the sandbox's client a request budget (it has none) on the test's clock, once the
    bot is open so that the budget stays in memory: on PostgreSQL a bot shares the budgets its
    clients open with, and the report's readers, waiting together on a clock that jumps, would
    then record waits of zero."""
    sleeps = Sleeps(clock)
    voipcloud(runtime).budget = RateBudget(
        RateLimit.parse(limit), provider="VoIPcloud", clock=clock, sleep=sleeps
    )
    return sleeps


async def admin(runtime: Runtime, line: str) -> RecordingSurface:
    surface = RecordingSurface(user="U0ADMIN", channel="C0BILLING")
    await runtime.dispatcher.run(line, user="U0ADMIN", channel="C0BILLING", surface=surface)
    return surface


def add_report(cron: str, accounts: str = ACCOUNTS) -> str:
    return f'/billing schedule add balance-report "{cron}" accounts={accounts}'


# --- when it is added -------------------------------------------------------------------------


async def test_adding_a_report_says_how_long_before_its_time_it_starts(
    open_on_clock: OpenOnClock,
) -> None:
    clock = Clock(NOON)
    billing = await open_on_clock(clock, billing_channel="C0BILLING")
    assert billing.scheduler is not None
    use_budget(billing, "10/1m", clock)

    surface = await admin(billing, add_report("0 9 * * *"))

    assert surface.sent[0].text == (
        "Schedule #1 added: balance-report `0 9 * * *` (at 09:00) → <#C0BILLING>; next run "
        "2026-11-21 09:00 UTC. Each run starts 5 min early so that it posts at its time: it "
        "reads 35 VoIPcloud balances, which can wait up to 4 min for the request budget "
        "(10 per 1 min), and a minute for the answers."
    )
    assert sandbox_of(billing, "voipcloud").control.requests == []  # estimating reads nothing


async def test_a_first_run_sooner_than_the_lead_starts_at_once(
    open_on_clock: OpenOnClock,
) -> None:
    clock = Clock(DUE - timedelta(minutes=3))
    billing = await open_on_clock(clock, billing_channel="C0BILLING")
    assert billing.scheduler is not None
    use_budget(billing, "10/1m", clock)

    surface = await admin(billing, add_report("0 9 * * *"))

    assert surface.sent[0].text.endswith(
        "The first run is sooner than that: it starts now and posts when done."
    )


async def test_runs_that_would_overlap_are_refused(open_on_clock: OpenOnClock) -> None:
    clock = Clock(NOON)
    billing = await open_on_clock(clock, billing_channel="C0BILLING")
    assert billing.scheduler is not None
    use_budget(billing, "100/15m", clock)

    surface = await admin(billing, add_report("0 * * * *", accounts_text(10001, 10500)))

    assert surface.privates == [
        "Nothing was scheduled: each run must start 1 h 16 min before its time (it reads 500 "
        "VoIPcloud balances, which can wait up to 1 h 15 min for the request budget (100 per "
        "15 min), and a minute for the answers), longer than the 1 h 00 min between runs of "
        "`0 * * * *`, so runs would overlap. Run it less often, or give each run less to do."
    ]
    assert surface.sent == []
    assert await billing.schedules.all() == []
    assert sandbox_of(billing, "voipcloud").control.requests == []
    # The same accounts every three hours fit.
    fits = await admin(billing, add_report("0 */3 * * *", accounts_text(10001, 10500)))
    assert fits.sent[0].text.startswith("Schedule #1 added: balance-report `0 */3 * * *`")


def test_the_shortest_gap_is_real_time_across_daylight_saving() -> None:
    lisbon = ZoneInfo("Europe/Lisbon")
    # 29 March 2026: clocks go forward an hour, so 09:00 to 09:00 is 23 hours.
    spring = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    assert shortest_gap("0 9 * * *", lisbon, spring, runs=5) == timedelta(hours=23)
    assert shortest_gap("0 9,10 * * *", UTC_ZONE, NOON) == timedelta(hours=1)
    assert shortest_gap("0 9 * * 1-5", UTC_ZONE, NOON) == timedelta(days=1)
    assert shortest_gap("0 9 1 * *", UTC_ZONE, NOON) == timedelta(days=28)


# --- when it fires ----------------------------------------------------------------------------


@dataclass
class TimedSurface(RecordingSurface):
    """Records when, on the test's clock, each message was posted."""

    clock: Clock = field(default_factory=Clock)
    posted_at: list[tuple[datetime, Reply]] = field(default_factory=list)

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        self.posted_at.append((self.clock(), reply))
        return await super().send(reply, key=key)


async def test_a_report_starts_its_lead_early_and_posts_at_its_time(
    open_on_clock: OpenOnClock,
) -> None:
    clock = Clock(NOON)  # what the run reads "now" from, and waits against
    channel = TimedSurface(channel="C0BILLING", user="", clock=clock)
    runtime = await open_on_clock(clock, surfaces={"C0BILLING": channel})
    sleeps = use_budget(runtime, "10/1m", clock)
    runs = ScheduleRuns(
        catalog=runtime.catalog,
        runner=runtime.executor,
        flow=runtime.flow,
        roles=runtime.roles,
        audit=runtime.audit,
        store=runtime.schedules,
        history=runtime.runs.history,
        system_surface=runtime.system_surface,
        tz=runtime.settings.tz,
        clock=clock,
        sleep=sleeps,
    )
    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=UTC_ZONE, clock=clock),
        run=runs.run,
        audit=runtime.audit,
        clock=clock,
        lead=runtime.runs.lead,
    )
    row = await scheduler.store.add(
        kind="balance-report",
        cron="0 9 * * *",
        args={"accounts": ACCOUNTS},
        channel="C0BILLING",
        created_by="U0ADMIN",
    )
    assert row.next_run_at == DUE
    assert runtime.runs.lead(row) == timedelta(minutes=5)
    try:
        clock.now = DUE - timedelta(minutes=5, seconds=1)
        assert await scheduler.tick() == 0  # not yet
        clock.now = DUE - timedelta(minutes=5)
        assert await scheduler.tick() == 1
    finally:
        await scheduler.stop()

    # 35 reads at 10 a minute from 08:55: the last at 08:58; then it held the report 2 minutes.
    assert len(sandbox_of(runtime, "voipcloud").control.requests) == 35
    assert sleeps.delays == [60.0, 60.0, 60.0, 120.0]
    (posted,) = [(at, r) for at, r in channel.posted_at if r.text.startswith("*VoIPcloud")]
    assert posted[0] == DUE
    assert posted[1].text.startswith("*VoIPcloud balances, 2026-11-01..2026-11-21*: 35 accounts")
    progress = [r.text for at, r in channel.posted_at if at < DUE]
    assert progress and "schedule #1, posts 2026-11-21 09:00 UTC" in progress[0]
    after = await scheduler.store.get(row.id)
    assert after is not None and after.next_run_at == DUE + timedelta(days=1)
    async with runtime.engine.connect() as conn:
        details = (
            (await conn.execute(sa.select(audit.c.detail).where(audit.c.user_id == "schedule:1")))
            .scalars()
            .all()
        )
    assert len(details) == 1 and details[0].startswith(f"due {DUE.isoformat()}: ")


async def test_a_run_that_started_early_holds_up_no_other_schedule(runtime: Runtime) -> None:
    clock = Clock(datetime(2026, 11, 20, 5, 50, tzinfo=UTC))
    release, first_started, second_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()
    fired: list[tuple[int, datetime | None]] = []
    ids: dict[str, int] = {}

    async def run(schedule: Schedule, due: datetime | None) -> None:
        fired.append((schedule.id, due))
        if schedule.id == ids["long"]:
            first_started.set()
            await release.wait()
        else:
            second_ran.set()

    def lead(schedule: Schedule) -> timedelta:
        return timedelta(hours=2) if schedule.id == ids["long"] else timedelta(0)

    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=UTC_ZONE, clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
        lead=lead,
    )
    add = scheduler.store.add
    ids["long"] = (await add(kind="k", cron="0 * * * *", args={}, channel="C", created_by="U")).id
    ids["short"] = (await add(kind="k", cron="30 6 * * *", args={}, channel="C", created_by="U")).id
    at = clock.now.replace
    try:
        assert await scheduler.tick(wait=False) == 1  # 06:00 less two hours has come
        await first_started.wait()
        # Its next run (07:00) is within its lead too, but this one is still going: it waits.
        assert await scheduler.tick(wait=False) == 0
        clock.now = at(hour=6, minute=30)
        assert await scheduler.tick() == 1  # the other schedule runs meanwhile
        await second_ran.wait()
        assert not release.is_set()
        release.set()
        await scheduler.runs_done()
        assert await scheduler.tick() == 1  # the waiting run goes once the first has ended
    finally:
        await scheduler.stop()
    assert fired == [
        (ids["long"], at(hour=6, minute=0)),
        (ids["short"], at(hour=6, minute=30)),
        (ids["long"], at(hour=7, minute=0)),
    ]


async def test_stopping_ends_a_run_in_progress(runtime: Runtime) -> None:
    clock = Clock(datetime(2026, 11, 20, 6, 0, tzinfo=UTC))
    started, ended = asyncio.Event(), asyncio.Event()

    async def run(schedule: Schedule, due: datetime | None) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a report still reading
        finally:
            ended.set()

    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=UTC_ZONE, clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
        lead=lambda schedule: timedelta(hours=1),
    )
    await scheduler.store.add(kind="k", cron="0 7 * * *", args={}, channel="C", created_by="U")
    assert await scheduler.tick(wait=False) == 1
    await started.wait()
    await scheduler.stop()
    assert ended.is_set()
