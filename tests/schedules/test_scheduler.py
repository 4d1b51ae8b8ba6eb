"""Schedules: validation, the store, once-only firing, missed runs, leadership."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.runtime import Runtime
from bot.schedules.commands import cron_in_words
from bot.schedules.cron import check_schedule_cron, cron_trigger, next_run
from bot.schedules.engine import Scheduler
from bot.schedules.store import Schedule, ScheduleStore
from bot.storage.store import audit, schedules
from tests.support import OpenBot, RecordingSurface, sandbox_of


def test_cron_in_the_team_zone() -> None:
    lisbon = ZoneInfo("Europe/Lisbon")
    after = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    fire = next_run("0 9 1 * *", lisbon, after)
    assert fire == datetime(2026, 12, 1, 9, 0, tzinfo=lisbon)
    assert next_run("30 8 * * 1", ZoneInfo("Asia/Tokyo"), after) == datetime(
        2026, 11, 23, 8, 30, tzinfo=ZoneInfo("Asia/Tokyo")
    )


@pytest.mark.parametrize(
    ("expression", "first_fire"),
    [
        ("0 9 * * 1", datetime(2026, 11, 23, 9, 0)),  # Monday, as in crontab
        ("0 9 * * 0", datetime(2026, 11, 22, 9, 0)),  # Sunday
        ("0 9 * * 7", datetime(2026, 11, 22, 9, 0)),  # Sunday again
        ("0 9 * * 1-5", datetime(2026, 11, 23, 9, 0)),  # weekdays
        ("0 9 * * 6", datetime(2026, 11, 28, 9, 0)),  # Saturday
        ("0 9 * * sat,sun", datetime(2026, 11, 22, 9, 0)),
    ],
)
def test_weekdays_count_as_in_crontab(expression: str, first_fire: datetime) -> None:
    after = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)  # a Saturday, past 09:00
    assert next_run(expression, ZoneInfo("UTC"), after) == first_fire.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 9 1 *", "needs 5 fields"),
        ("61 9 1 * *", "not a valid cron expression"),
        ("0 25 * * *", "not a valid cron expression"),
        ("every monday", "needs 5 fields"),
        ("0 9 * * 8", "day of week 8 is not 0-7"),
    ],
)
def test_bad_cron_is_explained(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        cron_trigger(expression, ZoneInfo("UTC"))


async def admin(runtime: Runtime, line: str) -> RecordingSurface:
    surface = RecordingSurface(user="U0ADMIN", channel="C0BILLING")
    await runtime.dispatcher.run(line, user="U0ADMIN", channel="C0BILLING", surface=surface)
    return surface


async def test_bad_schedule_input_sends_nothing(runtime: Runtime) -> None:
    surface = await admin(runtime, '/billing schedule add closing-reminder "0 9 1 *"')
    assert "`cron`: '0 9 1 *' is not a cron expression: it needs 5 fields" in surface.privates[0]
    assert 'Example: `/billing schedule add closing-reminder "0 9 1 * *"`' in surface.privates[0]
    surface = await admin(
        runtime, '/billing schedule add closing-reminder "0 9 1 * *" accounts=1,x'
    )
    assert "`accounts`" in surface.privates[0]
    surface = await admin(runtime, "/billing schedule pause 99")
    assert surface.privates == ["There is no schedule #99; see `/billing schedules`."]
    assert runtime.scheduler is not None and await runtime.schedules.all() == []
    for name in ("activeplatform", "voipcloud"):
        assert sandbox_of(runtime, name).control.requests == []


async def test_a_schedule_needs_billing_channel(runtime: Runtime) -> None:
    assert runtime.settings.billing_channel is None
    surface = await admin(runtime, '/billing schedule add closing-reminder "0 9 1 * *"')
    assert "BILLING_CHANNEL, which is not set" in surface.privates[0]
    assert runtime.scheduler is not None and await runtime.schedules.all() == []
    viewer = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        '/billing schedule add closing-reminder "0 9 1 * *"',
        user="U1",
        channel="C1",
        surface=viewer,
    )
    assert "needs the *admin* role" in viewer.privates[0]


@pytest.fixture
async def with_channel(open_bot: OpenBot) -> Runtime:
    return await open_bot(billing_channel="C0BILLING")


async def test_add_list_pause_resume_remove(with_channel: Runtime) -> None:
    runtime = with_channel
    surface = await admin(runtime, '/billing schedule add closing-reminder "0 9 1 * *" reseller=1')
    assert surface.sent[0].text.startswith("Schedule #1 added: closing-reminder `0 9 1 * *`")
    listing = await admin(runtime, "/billing schedules")
    table = listing.sent[0].table
    assert table is not None and table.rows[0][:3] == ["1", "closing-reminder", "0 9 1 * *"]
    assert "reseller=1" in table.rows[0][6]
    await admin(runtime, "/billing schedule pause 1")
    assert runtime.scheduler is not None
    paused = await runtime.schedules.get(1)
    assert paused is not None and paused.paused and paused.next_run_at is None
    await admin(runtime, "/billing schedule resume 1")
    resumed = await runtime.schedules.get(1)
    assert resumed is not None and not resumed.paused and resumed.next_run_at is not None
    await admin(runtime, "/billing schedule remove 1")
    assert await runtime.schedules.all() == []


async def test_run_now_posts_the_reminder_as_an_approval(with_channel: Runtime) -> None:
    runtime = with_channel
    await admin(runtime, '/billing schedule add closing-reminder "0 9 1 * *"')
    await admin(runtime, "/billing schedule run 1")
    posted = runtime.system_surface("C0BILLING")
    card = posted.sent[-1]  # type: ignore[attr-defined]
    assert card.text.startswith("Closing documents for ")
    assert [b.label for b in card.buttons] == ["Send notifications", "Skip", "Snooze 24 h"]
    sandbox = sandbox_of(runtime, "activeplatform")
    assert all(r.method == "GET" for r in sandbox.control.requests)  # only counted, nothing sent
    # Send is for approvers only, and runs once whatever the clicks.
    operator = RecordingSurface(user="U1", channel="C0BILLING")
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U1", channel="C0BILLING", surface=operator
    )
    approver = RecordingSurface(user="U2", channel="C0BILLING")
    assert await runtime.dispatcher.run(
        "/billing approve 1", user="U2", channel="C0BILLING", surface=approver
    )
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C0BILLING", surface=approver
    )
    posts = [r for r in sandbox.control.requests if r.method == "POST"]
    notified = [a for r in posts for a in __import__("json").loads(r.body)["account_ids"]]
    assert len(notified) == len(set(notified)) > 0
    async with runtime.engine.connect() as conn:
        decisions = (await conn.execute(sa.select(audit.c.decision))).scalars().all()
    assert {"scheduled run", "requested", "approved", "executed"} <= set(decisions)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 1 * *", "at 09:00, on day 1 of the month"),
        ("30 7 * * 1-5", "at 07:30, Monday through Friday"),
        ("0 8 * * 1", "at 08:00, only on Monday"),
        ("0 9 * * 0", "at 09:00, only on Sunday"),  # 0 is Sunday, as crontab counts
        ("0 * * * *", "every hour"),
    ],
)
def test_a_cron_reads_in_words(expression: str, words: str) -> None:
    assert cron_in_words(expression) == words


async def test_the_list_and_the_confirmation_say_the_cron_in_words(
    with_channel: Runtime,
) -> None:
    runtime = with_channel
    added = await admin(runtime, '/billing schedule add closing-reminder "0 9 1 * *"')
    assert added.sent[0].text.startswith(
        "Schedule #1 added: closing-reminder `0 9 1 * *` (at 09:00, on day 1 of the month) → "
    )
    listing = await admin(runtime, "/billing schedules")
    table = listing.sent[0].table
    assert table is not None
    assert list(table.columns)[2:5] == ["Cron", "When", "Next run"]
    assert table.rows[0][2:4] == ["0 9 1 * *", "at 09:00, on day 1 of the month"]


@pytest.mark.parametrize(
    ("expression", "sentence"),
    [
        (
            "0 9 31 2 *",
            "`cron`: '0 9 31 2 *' never runs: no date matches its day and month; pick a day "
            'the month has, like "0 9 28 2 *"',
        ),
        ("0 9 31 4,6,9,11 *", "`cron`: '0 9 31 4,6,9,11 *' never runs"),
        (
            "* * * * *",
            "`cron`: '* * * * *' runs 60 times an hour; a schedule posts to the channel, so it "
            'may run at most once an hour: give one minute, like "0 * * * *" or "0 9 * * *"',
        ),
        ("*/30 * * * *", "`cron`: '*/30 * * * *' runs 2 times an hour"),
        ("0,15 9 1 * *", "`cron`: '0,15 9 1 * *' runs 2 times an hour"),
        ("* 9 1 * *", "`cron`: '* 9 1 * *' runs 60 times an hour"),
    ],
)
async def test_a_cron_that_never_runs_or_runs_too_often_is_refused(
    with_channel: Runtime, expression: str, sentence: str
) -> None:
    runtime = with_channel
    surface = await admin(runtime, f'/billing schedule add closing-reminder "{expression}"')
    [message] = surface.privates
    assert sentence in message
    assert 'Example: `/billing schedule add closing-reminder "0 9 1 * *"`' in message
    assert surface.sent == []
    assert runtime.scheduler is not None and await runtime.schedules.all() == []
    assert sandbox_of(runtime, "activeplatform").control.requests == []


@pytest.mark.parametrize("expression", ["0 * * * *", "0 9 29 2 *", "59 23 31 * *", "5 */2 * * *"])
def test_rare_and_hourly_crons_are_accepted(expression: str) -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    check_schedule_cron(expression, now=now)  # raises on refusal
    assert next_run(expression, ZoneInfo("UTC"), now) is not None


async def snoozed_reminder(runtime: Runtime, cron: str) -> RecordingSurface:
    """Schedule a closing reminder on `cron`, run it now and have U2 snooze its request #1."""
    await admin(runtime, f'/billing schedule add closing-reminder "{cron}"')
    await admin(runtime, "/billing schedule run 1")
    approver = RecordingSurface(user="U2", channel="C0BILLING")
    assert await runtime.dispatcher.run(
        "/billing snooze 1", user="U2", channel="C0BILLING", surface=approver
    )
    return approver


async def test_snooze_says_snoozed_until_and_keeps_the_cron(with_channel: Runtime) -> None:
    runtime = with_channel
    # A monthly day at least a week away, so the snooze comes before the next regular run
    # whatever today is (the test runs on the real clock).
    day = (datetime.now(runtime.settings.tz).day + 9) % 28 + 1
    cron = f"0 9 {day} * *"
    approver = await snoozed_reminder(runtime, cron)
    assert runtime.scheduler is not None
    decided = await runtime.approvals.get(1)
    assert decided is not None and decided.decided_at is not None
    again = decided.decided_at + timedelta(hours=24)
    shown = again.astimezone(runtime.settings.tz).strftime("%Y-%m-%d %H:%M %Z")

    cards = [r for _, r in approver.updates] + [
        r
        for _, r in runtime.system_surface("C0BILLING").updates  # type: ignore[attr-defined]
    ]
    card = cards[-1]
    assert card.text == f"💤 #1 snoozed until {shown} by <@U2>: it will be asked again then"
    assert "🚫" not in approver.texts() and "rejected" not in approver.texts()
    assert f"#1 snoozed until {shown}: it will be asked again then" in approver.texts()

    # The cron stays: the list shows the extra ask, then the regular run on its day.
    row = await runtime.schedules.get(1)
    assert row is not None and row.cron == cron
    regular = runtime.schedules.regular_run(row)
    assert regular is not None
    local = regular.astimezone(runtime.settings.tz)
    assert (local.day, local.hour) == (day, 9)
    listing = await admin(runtime, "/billing schedules")
    table = listing.sent[0].table
    assert table is not None
    assert table.rows[0][4].endswith(
        "(snoozed reminder), then "
        + regular.astimezone(runtime.settings.tz).strftime("%Y-%m-%d %H:%M %Z")
    )


async def test_a_snoozed_reminder_asks_again_and_the_cron_carries_on(runtime: Runtime) -> None:
    fired: list[datetime | None] = []

    async def run(schedule: Schedule, due: datetime | None) -> None:
        fired.append(due)

    clock = Clock(datetime(2026, 11, 1, 9, 0, 30, tzinfo=UTC))
    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
    )
    monthly = await scheduler.store.add(
        kind="closing-reminder", cron="0 9 1 * *", args={}, channel="C1", created_by="U0ADMIN"
    )
    december = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert monthly.next_run_at == december
    await scheduler.store.postpone(monthly.id, 24)
    snoozed = await scheduler.store.get(monthly.id)
    assert snoozed is not None and snoozed.next_run_at == clock.now + timedelta(hours=24)
    assert scheduler.store.regular_run(snoozed) == december  # the cron's own run has not moved

    clock.now += timedelta(hours=24, seconds=10)
    try:
        assert await scheduler.tick() == 1
    finally:
        await scheduler.stop()  # the tick took the leader's connection: give it back
    assert fired == [datetime(2026, 11, 2, 9, 0, 30, tzinfo=UTC)]
    after = await scheduler.store.get(monthly.id)
    assert after is not None and after.next_run_at == december


async def test_a_regular_run_sooner_than_the_snooze_is_not_moved(runtime: Runtime) -> None:
    async def run(schedule: Schedule, due: datetime | None) -> None:
        return None

    clock = Clock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
    )
    daily = await scheduler.store.add(
        kind="closing-reminder", cron="0 9 * * *", args={}, channel="C1", created_by="U0ADMIN"
    )
    await scheduler.store.postpone(daily.id, 24)
    kept = await scheduler.store.get(daily.id)
    # Tomorrow 09:00 comes before 24 h from now: it asks again itself, and stays where it was.
    assert kept is not None and kept.next_run_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def test_snooze_asks_again_later(with_channel: Runtime) -> None:
    runtime = with_channel
    await admin(runtime, '/billing schedule add closing-reminder "0 9 1 * *"')
    await admin(runtime, "/billing schedule run 1")
    approver = RecordingSurface(user="U2", channel="C0BILLING")
    assert await runtime.dispatcher.run(
        "/billing snooze 1", user="U2", channel="C0BILLING", surface=approver
    )
    assert runtime.scheduler is not None
    row = await runtime.schedules.get(1)
    assert row is not None and row.next_run_at is not None
    assert row.next_run_at - runtime.executor.clock() < timedelta(hours=24, minutes=1)
    assert not await runtime.dispatcher.run(
        "/billing approve 1", user="U3", channel="C0BILLING", surface=approver
    )
    assert [
        r for r in sandbox_of(runtime, "activeplatform").control.requests if r.method == "POST"
    ] == []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_due_runs_fire_once_missed_runs_once_within_grace(runtime: Runtime) -> None:
    fired: list[tuple[int, datetime | None]] = []

    async def run(schedule: Schedule, due: datetime | None) -> None:
        fired.append((schedule.id, due))

    clock = Clock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        grace=timedelta(hours=6),
        clock=clock,
    )
    first = await scheduler.store.add(
        kind="closing-reminder", cron="0 9 1 * *", args={}, channel="C", created_by="U0ADMIN"
    )
    late = await scheduler.store.add(
        kind="closing-reminder", cron="0 9 1 * *", args={}, channel="C", created_by="U0ADMIN"
    )
    assert first.next_run_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    assert await scheduler.tick() == 0  # nothing due yet
    # The bot was down over the due time: 2 h late is within grace, fires once...
    clock.now = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    async with runtime.engine.begin() as conn:  # ...while the other is 2 days late
        await conn.execute(
            schedules.update()
            .where(schedules.c.id == late.id)
            .values(next_run_at=datetime(2026, 11, 29, 9, 0, tzinfo=UTC))
        )
    assert await scheduler.tick() == 1
    assert fired == [(first.id, datetime(2026, 12, 1, 9, 0, tzinfo=UTC))]
    assert await scheduler.tick() == 0  # ...and never twice
    again = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
    )
    assert await again.tick() == 0  # not after a restart either
    reloaded = await scheduler.store.get(first.id)
    assert reloaded is not None and reloaded.next_run_at == datetime(2027, 1, 1, 9, 0, tzinfo=UTC)
    async with runtime.engine.connect() as conn:
        missed = (
            (await conn.execute(sa.select(audit.c.detail).where(audit.c.decision == "missed")))
            .scalars()
            .all()
        )
    assert len(missed) == 1 and "more than 6:00:00 late" in missed[0]
    await scheduler.stop()
    await again.stop()


async def test_two_schedulers_racing_fire_a_run_once(runtime: Runtime) -> None:
    fired: list[int] = []

    async def run(schedule: Schedule, due: datetime | None) -> None:
        fired.append(schedule.id)

    clock = Clock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    one = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
    )
    two = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC"), clock=clock),
        run=run,
        audit=runtime.audit,
        clock=clock,
    )
    one.leader.always = two.leader.always = True  # as if leadership overlapped for a moment
    row = await one.store.add(
        kind="closing-reminder", cron="* * * * *", args={}, channel="C", created_by="U"
    )
    assert row.next_run_at is not None
    clock.now = row.next_run_at + timedelta(seconds=5)
    import asyncio

    counts = await asyncio.gather(one.tick(), two.tick(), one.tick(), two.tick())
    assert sum(counts) == 1 and fired == [row.id]
    await one.stop()
    await two.stop()


async def test_a_tick_cut_short_by_shutdown_is_not_reported_as_an_error(
    runtime: Runtime,
) -> None:
    """Quitting the console while a tick is under way cancels it; the ticking job ends
    quietly instead of raising (APScheduler would log "raised an exception")."""
    import asyncio

    scheduler = Scheduler(
        ScheduleStore(runtime.engine, tz=ZoneInfo("UTC")), run=_never, audit=runtime.audit
    )
    entered, release = asyncio.Event(), asyncio.Event()

    async def elect() -> bool:
        entered.set()
        await release.wait()
        return False

    scheduler.leader.elect = elect  # type: ignore[method-assign]
    job = asyncio.ensure_future(scheduler._tick_job())
    await asyncio.wait_for(entered.wait(), timeout=30)
    job.cancel()
    await job  # ends, rather than raising CancelledError
    assert job.done() and not job.cancelled()
    await scheduler.stop()


async def _never(schedule: Schedule, due: datetime | None) -> None:
    raise AssertionError("no schedule is due")


async def test_only_one_leader_on_postgresql(runtime: Runtime, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is one process: it always leads")

    async def run(schedule: Schedule, due: datetime | None) -> None:
        return None

    one = Scheduler(ScheduleStore(runtime.engine, tz=ZoneInfo("UTC")), run=run, audit=runtime.audit)
    from bot.storage.store import make_engine

    other_engine = make_engine(database_url)
    try:
        two = Scheduler(
            ScheduleStore(other_engine, tz=ZoneInfo("UTC")), run=run, audit=runtime.audit
        )
        assert await one.leader.elect() is True
        assert await two.leader.elect() is False
        await one.leader.resign()  # as when the leader's session ends
        assert await two.leader.elect() is True
        assert await one.leader.elect() is False
        await two.leader.resign()
    finally:
        await other_engine.dispose()


async def test_a_snooze_says_the_regular_run_when_that_comes_first(
    with_channel: Runtime,
) -> None:
    """A reminder every six hours snoozed for 24: it is asked again at its next regular run,
    and the card says that time, not a day later."""
    runtime = with_channel
    approver = await snoozed_reminder(runtime, "0 */6 * * *")
    assert runtime.scheduler is not None
    row = await runtime.schedules.get(1)
    assert row is not None and row.next_run_at is not None
    shown = row.next_run_at.astimezone(runtime.settings.tz).strftime("%Y-%m-%d %H:%M %Z")
    assert f"#1 snoozed until {shown}: it will be asked again then" in approver.texts()


def test_a_tick_skipped_while_the_last_still_runs_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """APScheduler warns when a tick is skipped because the previous one still runs; ticks are
    coalesced on purpose, so that warning is dropped, and any other warning still shows."""
    aps = logging.getLogger("apscheduler.scheduler")
    with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
        aps.warning(
            'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
            "Scheduler._tick_job (trigger: interval[0:00:15], next run at: 2026-12-07)",
            1,
        )
        aps.warning('Run time of job "%s" was missed by %s', "Scheduler._tick_job", "0:00:03")
    assert [r.getMessage() for r in caplog.records] == [
        'Run time of job "Scheduler._tick_job" was missed by 0:00:03'
    ]
