"""`/billing report balances` and the `balance-report` schedule against the VoIPcloud sandbox:
what is read, what the reply says, progress, history and trend, the CSV, the budget wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from commands.base import MemoryHistory, Reply, Role
from commands.http import ProviderAuthError
from commands.types import Period
from commands.voipcloud import client as api
from commands.voipcloud import report
from commands.voipcloud.budget import RateLimit
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.commands import COMMANDS, PROVIDER, BalanceReportArgs
from commands.voipcloud.sandbox import SANDBOX_BASE_URL, SANDBOX_TOKEN, VoipcloudSandbox
from tests.support.reports import (
    Recorder,
    accounts_text,
    csv_rows,
    expected,
    file_named,
    month_so_far,
    report_context,
    run_billing,
    total,
)
from tests.support.voipcloud import (
    NOW,
    TODAY,
    Clock,
    Sleeps,
    new_sandbox,
    open_client,
    reply_texts,
)

PERIOD = month_so_far(TODAY)  # 2026-11-01..2026-11-17
SEEDED = ["10023", "10024", "10025"]


def people(amount: Decimal, sign: bool = False) -> str:
    """How the report writes an amount: exactly, with the five decimals VoIPcloud sends."""
    assert places(amount) <= 5, "the sandbox's figures carry five decimals"
    return f"{amount:+.5f}" if sign else f"{amount:.5f}"


def places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def section_with(reply: Reply, start: str) -> str:
    found = [s for s in reply.sections if s.startswith(start)]
    assert len(found) == 1, reply.sections
    return found[0]


def test_declared_under_billing_for_viewers_and_as_a_schedule_kind() -> None:
    (command,) = [c for c in COMMANDS if c.words == ("report", "balances")]
    assert (command.slash, command.role, command.approval) == ("billing", Role.VIEWER, False)
    assert command.idempotent
    kind = PROVIDER.schedule_kinds["balance-report"]
    assert kind.args is BalanceReportArgs
    # The bot stores a schedule's arguments as the text `preview()` gives, and reads them back.
    stored = BalanceReportArgs(accounts=("10023", "10024")).preview()
    assert BalanceReportArgs.model_validate(stored).accounts == ("10023", "10024")


async def test_report_reads_every_account_and_lists_the_one_that_fails(
    sandbox: VoipcloudSandbox,
) -> None:
    client = open_client(sandbox)
    reply = await run_billing(
        client, "report balances accounts=10023,99999,10024,10025", report_context()
    )

    sent = sandbox.control.requests
    assert sorted(r.query["account_number"] for r in sent) == ["10023", "10024", "10025", "99999"]
    for request in sent:
        assert (request.method, request.path) == ("GET", api.CUSTOMER_BALANCE)
        assert (request.query["from_date"], request.query["to_date"]) == (
            "2026-11-01",
            "2026-11-17",
        )
        assert request.headers["token"] == SANDBOX_TOKEN

    closing = total(sandbox, SEEDED, "closing_balance", PERIOD)
    assert reply.text == (
        "*VoIPcloud balances, 2026-11-01..2026-11-17*: 3 accounts, closing total "
        f"*{people(closing)}*; 1 of 4 could not be read"
    )
    fields = dict(reply.fields)
    assert fields["Opening balance"] == people(total(sandbox, SEEDED, "opening_balance", PERIOD))
    assert fields["Payments"] == people(total(sandbox, SEEDED, "payments", PERIOD))
    assert fields["Charges"] == people(total(sandbox, SEEDED, "total_charges", PERIOD))
    assert fields["Closing balance"] == people(closing)
    assert fields["Net change"] == people(total(sandbox, SEEDED, "change", PERIOD), sign=True)
    unread = section_with(reply, "*Not read*")
    assert unread == "*Not read* (1): `99999` (Customer not found (code 404))"
    # Four accounts fit in the message: a chart, no CSV.
    assert [f.mime for f in reply.files] == ["image/png"]
    assert not any(SANDBOX_TOKEN in text for text in reply_texts(reply))


async def test_movers_and_accounts_below_zero_follow_the_figures(
    sandbox: VoipcloudSandbox,
) -> None:
    reply = await run_billing(
        open_client(sandbox), "report balances accounts=10023,10024,10025", report_context()
    )
    figures = {a: expected(sandbox, a, PERIOD) for a in SEEDED}
    moved = sorted(
        (a for a in SEEDED if figures[a]["change"]), key=lambda a: -abs(figures[a]["change"])
    )
    movers = section_with(reply, "*Biggest movers*")
    positions = [movers.index(f"`{a}` {people(figures[a]['change'], sign=True)}") for a in moved]
    assert positions == sorted(positions)
    unmoved = [a for a in SEEDED if not figures[a]["change"]]
    assert unmoved and all(f"`{a}`" not in movers for a in unmoved)

    below = [a for a in SEEDED if figures[a]["closing_balance"] < 0]
    assert below, "the seeded data has an account in the red"
    in_red = section_with(reply, "*Below zero at the close*")
    assert "no credit limit" in in_red
    for account in below:
        assert f"`{account}` {people(figures[account]['closing_balance'])}" in in_red
    for account in set(SEEDED) - set(below):
        assert f"`{account}`" not in in_red
    assert dict(reply.fields)["Below zero"] == f"{len(below)} of 3 accounts"

    assert reply.table is not None
    assert [row[0] for row in reply.table.rows] == sorted(
        SEEDED, key=lambda a: (-abs(figures[a]["change"]), a)
    )
    row = next(r for r in reply.table.rows if r[0] == "10023")
    assert row[4] == people(figures["10023"]["closing_balance"])


async def test_figures_keep_provider_precision_and_totals_add_up_to_the_rows(
    sandbox: VoipcloudSandbox,
) -> None:
    reply = await run_billing(
        open_client(sandbox), "report balances accounts=10023,10024,10025", report_context()
    )
    assert reply.table is not None
    columns = list(reply.table.columns)
    rows = [dict(zip(columns, row, strict=True)) for row in reply.table.rows]
    for row in rows:
        figures = expected(sandbox, row["Account"], PERIOD)
        # Nothing is rounded away: each cell reads back as the very figure VoIPcloud sent.
        assert Decimal(row["Closing"]) == figures["closing_balance"]
        assert Decimal(row["Opening"]) == figures["opening_balance"]
        assert Decimal(row["Change"]) == figures["change"]
        # One column, one number of decimals: the figures line up.
        assert {places(Decimal(row[c])) for c in columns[1:]} == {5}
    fields = dict(reply.fields)
    # The totals are the exact sums of the rows people see, to the last digit.
    for field, column in (
        ("Opening balance", "Opening"),
        ("Payments", "Payments"),
        ("Charges", "Charges"),
        ("Closing balance", "Closing"),
        ("Net change", "Change"),
    ):
        assert Decimal(fields[field]) == sum((Decimal(r[column]) for r in rows), Decimal(0))


async def test_chart_labels_read_exactly_as_the_table(
    sandbox: VoipcloudSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.axes import Axes

    drawn: list[list[str]] = []
    original = Axes.bar_label

    def recording(self: Axes, container: Any, labels: Any = None, **kwargs: Any) -> Any:
        drawn.append(list(labels))
        return original(self, container, labels=labels, **kwargs)

    monkeypatch.setattr(Axes, "bar_label", recording)
    reply = await run_billing(
        open_client(sandbox), "report balances accounts=10023,10024,10025", report_context()
    )
    assert reply.table is not None
    table = {row[0]: row for row in reply.table.rows}
    closing_labels, charges_labels = drawn
    ranked = sorted(table, key=lambda a: -Decimal(table[a][4]))  # the chart's order
    assert closing_labels == [table[a][4] for a in ranked]
    assert charges_labels == [table[a][3] for a in ranked]
    # 10023 is charged 60.625, where half-even and half-up part ways (60.62 against 60.63):
    # its label is neither, but the figure itself, as in the table.
    assert expected(sandbox, "10023", PERIOD)["total_charges"] == Decimal("60.625")
    assert charges_labels[ranked.index("10023")] == "60.62500"


async def test_progress_counts_up_to_every_account(sandbox: VoipcloudSandbox) -> None:
    recorder = Recorder()
    await run_billing(
        open_client(sandbox),
        "report balances accounts=10023,10024,99999,10025",
        report_context(recorder),
    )
    done = [d for d, _, _ in recorder.progress]
    assert done == [0, 1, 2, 3, 4]
    assert {t for _, t, _ in recorder.progress} == {4}
    assert recorder.progress[0][2] == "reading balances"
    assert recorder.progress[-1][2] == "reading balances, 1 not read"
    assert recorder.notes == []  # no budget: nothing to warn about


async def test_figures_are_recorded_in_the_history(sandbox: VoipcloudSandbox) -> None:
    history = MemoryHistory(clock=lambda: NOW)
    await run_billing(
        open_client(sandbox),
        "report balances accounts=10023,10024,10025,99999",
        report_context(history=history),
    )
    ((kind, at, data),) = history.items
    assert (kind, at) == ("balance-report", NOW)
    assert (data["period_start"], data["period_end"]) == ("2026-11-01", "2026-11-17")
    assert (data["accounts"], data["unread"]) == (3, 1)
    for key, name in [
        ("opening", "opening_balance"),
        ("payments", "payments"),
        ("charges", "total_charges"),
        ("closing", "closing_balance"),
    ]:
        assert isinstance(data[key], str)  # decimals are stored as text
        assert Decimal(data[key]) == total(sandbox, SEEDED, name, PERIOD)


async def test_the_next_report_compares_with_the_last_one_for_the_same_accounts(
    sandbox: VoipcloudSandbox,
) -> None:
    history = MemoryHistory(clock=lambda: NOW)
    client = open_client(sandbox)
    ctx = report_context(history=history)
    first = await run_billing(
        client, "report balances accounts=10023,10024 2026-10-01 2026-10-31", ctx
    )
    # A report over other accounts is a different series and is not compared.
    await run_billing(client, "report balances accounts=10025 2026-11-01 2026-11-10", ctx)
    assert not any("since the report" in s for s in first.sections)

    second = await run_billing(client, "report balances accounts=10024,10023", ctx)

    october = total(sandbox, ["10023", "10024"], "closing_balance", Period.month(2026, 10))
    now = total(sandbox, ["10023", "10024"], "closing_balance", PERIOD)
    since = section_with(second, "Total closing balance")
    assert since == (
        f"Total closing balance *{people(now - october, sign=True)}* since the report for the "
        f"period ending 2026-10-31 ({people(october)})."
    )
    assert len(history.items) == 3


async def test_trend_points_come_from_the_history() -> None:
    balances = (report.AccountBalance("1", Decimal(0), Decimal(0), Decimal(0), Decimal("7.5")),)
    readings = report.Readings(
        period=Period(date(2026, 11, 1), date(2026, 11, 17)),
        asked=("1",),
        balances=balances,
        unread=(),
    )
    mine = readings.selection
    at = datetime(2026, 11, 1, tzinfo=UTC)
    records = [
        (at, {"selection": mine, "period_end": "2026-10-31", "closing": "5"}),
        (at, {"selection": mine, "period_end": "2026-11-10", "closing": "6"}),
        (at, {"selection": mine, "period_end": "2026-11-10", "closing": "6.5"}),  # later run
        (at, {"selection": "other accounts", "period_end": "2026-11-12", "closing": "99"}),
        (at, {"selection": mine, "period_end": "2026-12-31", "closing": "1"}),  # after this one
        (at, {"selection": mine, "period_end": "not a date", "closing": "1"}),
        (at, {"selection": mine, "period_end": "2026-11-11", "closing": "lots"}),
        (at, {"selection": mine, "period_end": "2026-11-17", "closing": "2"}),  # replaced
    ]
    points = report.trend(records, readings)
    assert [(p.period_end.isoformat(), p.closing) for p in points] == [
        ("2026-10-31", Decimal("5")),
        ("2026-11-10", Decimal("6.5")),
        ("2026-11-17", Decimal("7.5")),
    ]


async def test_a_long_report_attaches_every_account_as_csv() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=40)
    accounts = [str(n) for n in range(10023, 10063)]
    text = f"report balances accounts={','.join(accounts)},99999"
    reply = await run_billing(open_client(sandbox), text, report_context())

    assert len(sandbox.control.requests) == 41
    csv_file = file_named(reply, ".csv")
    assert (csv_file.mime, csv_file.filename) == (
        "text/csv",
        "voipcloud-balances-2026-11-01-2026-11-17.csv",
    )
    rows = csv_rows(reply)
    assert [r["account"] for r in rows] == [*accounts, "99999"]  # every account, as asked
    for row in rows[:-1]:
        figures = expected(sandbox, row["account"], PERIOD)
        assert Decimal(row["opening_balance"]) == figures["opening_balance"]
        assert Decimal(row["payments"]) == figures["payments"]
        assert Decimal(row["charges"]) == figures["total_charges"]
        assert Decimal(row["closing_balance"]) == figures["closing_balance"]
        assert Decimal(row["change"]) == figures["change"]
        assert row["note"] == ""
    assert rows[-1]["note"] == "not read: Customer not found (code 404)"
    assert rows[-1]["closing_balance"] == ""

    assert reply.table is not None and len(reply.table.rows) == report.TABLE_ROWS
    assert any("the attached CSV has all 41" in s for s in reply.sections)
    assert file_named(reply, ".png").mime == "image/png"


async def test_a_short_report_has_no_csv(sandbox: VoipcloudSandbox) -> None:
    reply = await run_billing(
        open_client(sandbox), "report balances accounts=10023", report_context()
    )
    assert not [f for f in reply.files if f.mime == "text/csv"]
    assert reply.table is not None and [r[0] for r in reply.table.rows] == ["10023"]


async def test_when_nothing_can_be_read_the_reply_says_so_and_nothing_is_recorded(
    sandbox: VoipcloudSandbox,
) -> None:
    history = MemoryHistory()
    reply = await run_billing(
        open_client(sandbox),
        "report balances accounts=99998,99999",
        report_context(history=history),
    )
    assert reply.text.endswith("none of the 2 accounts could be read.")
    assert "`99998` (Customer not found (code 404))" in reply.sections[0]
    assert reply.files == []
    assert history.items == []


async def test_a_refused_key_stops_the_report(sandbox: VoipcloudSandbox) -> None:
    sandbox.ip_allowed = False
    accounts = accounts_text(10023, 10062)
    with pytest.raises(ProviderAuthError, match="allow-list"):
        await run_billing(
            open_client(sandbox), f"report balances accounts={accounts}", report_context()
        )
    # It stops at the first refusal: only the reads already under way were sent.
    assert len(sandbox.control.requests) <= report.CONCURRENCY


class InFlight:
    """An ASGI wrapper that counts the requests being answered at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0)  # let any other request in
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


async def test_reads_are_bounded_by_the_concurrency_limit() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=20)
    counter = InFlight(sandbox.app())
    client = VoipcloudClient.open(
        base_url=SANDBOX_BASE_URL,
        token=SANDBOX_TOKEN,
        rate_limit=None,
        transport=httpx.ASGITransport(app=counter),
    )
    accounts = [str(n) for n in range(10023, 10043)]
    readings = await report.read_balances(client, accounts, PERIOD, report_context(), concurrency=3)
    assert len(readings.balances) == 20
    assert counter.peak == 3


async def test_a_report_larger_than_the_budget_announces_its_finish_and_waits() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=8)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("5/1m"), clock=clock)
    recorder = Recorder()
    accounts = accounts_text(10023, 10030)

    reply = await run_billing(
        client, f"report balances accounts={accounts}", report_context(recorder)
    )

    # Five requests go at 09:30; the window lets the other three go one minute later.
    assert recorder.notes == [
        "This report will take about 1 min: it reads 8 VoIPcloud balances and the request "
        "budget (5 per 1 min) has 5 requests left now. It will finish around 09:31 UTC and be "
        "posted here when done."
    ]
    assert len(sandbox.control.requests) == 8
    assert reply.text.startswith("*VoIPcloud balances, 2026-11-01..2026-11-17*: 8 accounts,")
    assert clock.now >= NOW + timedelta(minutes=1)  # it waited, on the injected clock
    sleeps = client.budget.sleep
    assert isinstance(sleeps, Sleeps) and sleeps.delays and min(sleeps.delays) > 0


async def test_finish_time_is_shown_in_the_team_time_zone() -> None:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=4)
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("2/30m"), clock=clock)
    recorder = Recorder()
    await run_billing(
        client,
        f"report balances accounts={accounts_text(10023, 10026)}",
        report_context(recorder, tz="Australia/Sydney"),
    )
    # Two requests at 09:30 UTC, two at 10:00 UTC, which is 21:00 in Sydney (UTC+11).
    (note,) = recorder.notes
    assert "take about 30 min" in note and "finish around 21:00 Australia/Sydney" in note


async def test_no_note_when_the_budget_has_room(sandbox: VoipcloudSandbox) -> None:
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("100/15m"), clock=clock)
    recorder = Recorder()
    await run_billing(
        client, "report balances accounts=10023,10024,10025", report_context(recorder)
    )
    assert recorder.notes == []
    assert clock.now == NOW


@pytest.mark.parametrize(
    ("today", "start", "end"),
    [
        (date(2026, 11, 17), "2026-11-01", "2026-11-17"),
        (date(2026, 12, 1), "2026-11-01", "2026-11-30"),  # the 1st: the whole previous month
        (date(2027, 1, 1), "2026-12-01", "2026-12-31"),
    ],
)
async def test_scheduled_report_period(today: date, start: str, end: str) -> None:
    sandbox = new_sandbox(today)
    now = datetime.combine(today, NOW.timetz())
    kind = PROVIDER.schedule_kinds["balance-report"]
    args = kind.args.model_validate({"accounts": "10023,10024"})
    reply = await kind.run(open_client(sandbox), args, report_context(now=now))
    assert {(r.query["from_date"], r.query["to_date"]) for r in sandbox.control.requests} == {
        (start, end)
    }
    period = Period(date.fromisoformat(start), date.fromisoformat(end))
    assert reply.text.startswith(f"*VoIPcloud balances, {period.label}*")


async def test_scheduled_run_replies_in_the_same_shape_as_the_command(
    sandbox: VoipcloudSandbox,
) -> None:
    client = open_client(sandbox)
    typed = await run_billing(client, "report balances accounts=10023,10024", report_context())
    kind = PROVIDER.schedule_kinds["balance-report"]
    args = kind.args.model_validate({"accounts": "10023,10024"})
    scheduled = await kind.run(client, args, report_context())
    assert scheduled.text == typed.text
    assert scheduled.fields == typed.fields
    assert scheduled.table == typed.table
    assert [(f.filename, f.mime) for f in scheduled.files] == [
        (f.filename, f.mime) for f in typed.files
    ]
    assert not scheduled.private and scheduled.proposal is None


async def test_console_sandbox_serves_a_200_account_report() -> None:
    settings, sandbox = PROVIDER.sandbox()
    assert isinstance(sandbox, VoipcloudSandbox)
    assert set(sandbox.customers) >= {str(n) for n in range(10023, 10223)}
    # The documented customers keep their numbers; registrations get new ones.
    assert sandbox.customers["10023"].first_name == "Jane"
    assert str(sandbox.next_account) not in sandbox.customers
    client = open_client(sandbox)
    reply = await run_billing(
        client, f"report balances accounts={accounts_text(10023, 10222)}", report_context()
    )
    assert reply.text.startswith("*VoIPcloud balances, 2026-11-01..2026-11-17*: 200 accounts,")
    assert len(csv_rows(reply)) == 200
    assert settings.rate_limit is None
