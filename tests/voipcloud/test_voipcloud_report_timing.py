"""How long a balance report takes at the request budget: the note a typed report gives before
it starts, the lead a scheduled one needs, and the period a run that starts early reports on.
Every clock is injected and every wait moves it: nothing sleeps for real."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from commands.base import Lead, duration_words
from commands.voipcloud import report
from commands.voipcloud.budget import RateBudget, RateLimit
from commands.voipcloud.commands import (
    BalanceReportArgs,
    scheduled_balance_report,
    scheduled_report_lead,
)
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.reports import Recorder, accounts_text, report_context, run_billing
from tests.support.voipcloud import NOW, TODAY, Clock, Sleeps, open_client


@pytest.mark.parametrize(
    ("limit", "requests", "minutes"),
    [
        ("100/15m", 500, 75),  # the figure: 500 accounts at the documented budget
        ("100/15m", 100, 15),
        ("100/15m", 101, 30),
        ("100/15m", 1, 15),
        ("10/1m", 35, 4),
        ("10/1m", 0, 0),
    ],
)
def test_longest_wait_of_n_requests(limit: str, requests: int, minutes: int) -> None:
    parsed = RateLimit.parse(limit)
    assert parsed is not None
    assert parsed.longest(requests) == timedelta(minutes=minutes)


@pytest.mark.parametrize("requests", [1, 3, 4, 9, 10, 25])
async def test_longest_is_the_wait_when_the_window_is_found_full(requests: int) -> None:
    clock = Clock()
    limit = RateLimit.parse("3/1m")
    assert limit is not None
    budget = RateBudget(limit, provider="VoIPcloud", clock=clock, sleep=Sleeps(clock))
    for _ in range(3):  # someone else spent the whole window just now
        await budget.acquire(wait=False)
    assert budget.eta(requests) - clock.now == limit.longest(requests)


def test_duration_words() -> None:
    assert duration_words(timedelta(seconds=1)) == "1 min"
    assert duration_words(timedelta(minutes=40)) == "40 min"
    assert duration_words(timedelta(minutes=76)) == "1 h 16 min"
    assert duration_words(timedelta(hours=2, seconds=1)) == "2 h 01 min"


# --- a typed report says how long it will take, before it starts ------------------------------


async def test_a_long_report_says_how_long_before_the_first_read() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=35)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("10/1m"), clock=clock)
    recorder = Recorder()
    seen_at_note: list[int] = []

    async def note(text: str) -> None:
        seen_at_note.append(len(sandbox.control.requests))
        await recorder.on_notify(text)

    ctx = dataclasses.replace(report_context(recorder), notify=note)
    reply = await run_billing(
        client, f"report balances accounts={accounts_text(10023, 10057)}", ctx
    )

    # 35 reads at 10 a minute: the last goes 3 minutes after the first, at 09:33.
    assert recorder.notes == [
        "This report will take about 3 min: it reads 35 VoIPcloud balances and the request "
        "budget (10 per 1 min) has 10 requests left now. It will finish around 09:33 UTC and be "
        "posted here when done."
    ]
    assert seen_at_note == [0]  # told before anything was read
    assert len(sandbox.control.requests) == 35
    assert clock.now == NOW + timedelta(minutes=3)
    assert reply.text.startswith("*VoIPcloud balances, 2026-11-01..2026-11-17*: 35 accounts,")


async def test_the_estimate_counts_what_the_window_already_holds() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=12)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("10/15m"), clock=clock)
    for _ in range(10):  # the budget is spent by other commands a minute before
        await client.budget.acquire(wait=False)
    clock.advance(60)
    recorder = Recorder()
    await run_billing(
        client, f"report balances accounts={accounts_text(10023, 10034)}", report_context(recorder)
    )
    # Nothing left at 09:31: ten go at 09:45, the last two at 10:00.
    assert recorder.notes == [
        "This report will take about 29 min: it reads 12 VoIPcloud balances and the request "
        "budget (10 per 15 min) has no requests left now. It will finish around 10:00 UTC and "
        "be posted here when done."
    ]


async def test_a_short_wait_goes_unannounced() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=6)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("5/20s"), clock=clock)
    recorder = Recorder()
    await run_billing(
        client, f"report balances accounts={accounts_text(10023, 10028)}", report_context(recorder)
    )
    assert recorder.notes == []  # 20 seconds: the progress bar is enough
    assert clock.now == NOW + timedelta(seconds=20)  # it did wait for the sixth
    assert len(sandbox.control.requests) == 6


class MemoryShared:
    """`SharedLimits` as another replica sees it: one window of slots, in memory."""

    def __init__(self) -> None:
        self.sent: list[datetime] = []

    @contextlib.asynccontextmanager
    async def turn(self, key: str, spacing: float) -> AsyncIterator[None]:
        yield

    async def take(
        self, key: str, *, requests: int, window: timedelta, now: datetime
    ) -> tuple[bool, list[datetime]]:
        self.sent = [at for at in self.sent if at > now - window]
        taken = len(self.sent) < requests
        if taken:
            self.sent.append(now)
        return taken, list(self.sent)

    async def slots(self, key: str, *, window: timedelta, now: datetime) -> list[datetime]:
        return [at for at in self.sent if at > now - window]


async def test_the_estimate_reads_a_shared_budget_as_it_is_now() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=4)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("4/10m"), clock=clock)
    shared = MemoryShared()
    client.budget.share(shared)
    assert client.budget.available() == 4  # as this replica last saw it
    shared.sent = [NOW - timedelta(minutes=2)] * 4  # another replica spent it all meanwhile
    recorder = Recorder()
    await run_billing(
        client, f"report balances accounts={accounts_text(10023, 10026)}", report_context(recorder)
    )
    (note,) = recorder.notes
    assert "has no requests left now" in note and "finish around 09:38 UTC" in note


# --- a scheduled report starts early enough ----------------------------------------------------


def test_lead_of_a_scheduled_report_follows_accounts_and_budget() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY)
    args = BalanceReportArgs.model_validate({"accounts": accounts_text(10001, 10500)})
    documented = open_client(sandbox, rate_limit=RateLimit.parse("100/15m"))
    assert scheduled_report_lead(documented, args) == Lead(
        span=timedelta(minutes=76),
        reason="it reads 500 VoIPcloud balances, which can wait up to 1 h 15 min for the "
        "request budget (100 per 15 min), and a minute for the answers",
    )
    small = open_client(sandbox, rate_limit=RateLimit.parse("10/1m"))
    assert scheduled_report_lead(small, args).span == timedelta(minutes=51)
    unlimited = open_client(sandbox, rate_limit=None)
    assert scheduled_report_lead(unlimited, args) == Lead(
        span=timedelta(minutes=1),
        reason="it reads 500 VoIPcloud balances with no request budget to wait for, and a "
        "minute covers the answers",
    )


async def test_lead_spends_nothing() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY)
    client = open_client(sandbox, rate_limit=RateLimit.parse("10/1m"))
    args = BalanceReportArgs.model_validate({"accounts": accounts_text(10023, 10060)})
    report.lead(client, len(args.accounts))
    assert client.budget.available() == 10
    assert sandbox.control.requests == []


async def test_a_run_that_starts_the_day_before_reports_on_its_own_day() -> None:
    started = datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    due = datetime(2026, 11, 2, 0, 30, tzinfo=UTC)
    sandbox = VoipcloudSandbox(today=lambda: due.date(), population=3)
    client = open_client(sandbox, clock=Clock(started))
    args = BalanceReportArgs.model_validate({"accounts": "10023,10024,10025"})
    ctx = report_context(now=started)

    early = await scheduled_balance_report(client, args, dataclasses.replace(ctx, due=due))
    by_hand = await scheduled_balance_report(client, args, ctx)  # `schedule run`: no due time

    # Due on the 2nd: this month so far. Run by hand on the 1st: the whole previous month.
    assert early.text.startswith("*VoIPcloud balances, 2026-11-01..2026-11-02*")
    assert by_hand.text.startswith("*VoIPcloud balances, October 2026*")
