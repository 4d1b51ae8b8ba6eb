"""The balance report behind `/billing report balances` and the `balance-report` schedule.

Every account's statement for the period is read through the client, at most `CONCURRENCY` at a
time, so the shared request budget applies: reads wait for it instead of failing, and when it
cannot serve the whole report now the requester is told the expected finish. An account that
cannot be read (unknown, provider error) is listed in the reply; only a refused key stops the
report, since it would refuse every account.

The reply sums the figures, names the biggest movers and the accounts below zero, attaches a
chart and, for long lists, a CSV of every account. Its totals go to the report history, which
the next report's chart draws as a trend.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from commands import money
from commands.base import Context, File, Lead, Reply, Table, duration_words
from commands.http import ProviderAuthError, ProviderError
from commands.types import Period
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.models import Statement
from commands.words import plural

KIND = "balance-report"
CONCURRENCY = 8  # balance reads in flight at once
TABLE_ROWS = 30  # accounts a message lists; a longer report attaches a CSV of every account
CHART_BARS = 25  # accounts drawn as bars: the highest closing balances …
CHART_LOWEST = 5  # … and up to this many of the lowest, when they are below zero
MOVERS = 5
LISTED = 15  # accounts named in a sentence before "and N more in the CSV"
TREND_POINTS = 12
HISTORY_SCAN = 200  # past records searched for this selection of accounts
SHORT_WAIT = timedelta(seconds=30)  # a typed report that waits longer for the budget says so
READ_ALLOWANCE = timedelta(minutes=1)  # a scheduled report's lead beyond the budget's waits

BELOW_ZERO_RULE = (
    "VoIPcloud's balance answer carries no credit limit, so this lists closing balances under 0"
)


@dataclass(frozen=True)
class AccountBalance:
    account: str
    opening: Decimal
    payments: Decimal
    charges: Decimal
    closing: Decimal

    @property
    def change(self) -> Decimal:
        return self.closing - self.opening


@dataclass(frozen=True)
class Unread:
    account: str
    reason: str


@dataclass(frozen=True)
class Totals:
    opening: Decimal
    payments: Decimal
    charges: Decimal
    closing: Decimal

    @classmethod
    def of(cls, balances: Sequence[AccountBalance]) -> Totals:
        zero = Decimal(0)
        return cls(
            opening=sum((b.opening for b in balances), zero),
            payments=sum((b.payments for b in balances), zero),
            charges=sum((b.charges for b in balances), zero),
            closing=sum((b.closing for b in balances), zero),
        )


@dataclass(frozen=True)
class Readings:
    """What one run read: balances and failures, each in the order the accounts were asked."""

    period: Period
    asked: tuple[str, ...]
    balances: tuple[AccountBalance, ...]
    unread: tuple[Unread, ...]

    @property
    def totals(self) -> Totals:
        return Totals.of(self.balances)

    @property
    def decimals(self) -> int:
        """The most decimals any figure was sent with: every amount the report writes (table,
        totals, sentences, chart labels) is padded to it, so they line up and read alike."""
        return max(
            (
                money.places(amount)
                for b in self.balances
                for amount in (b.opening, b.payments, b.charges, b.closing)
            ),
            default=0,
        )

    @property
    def selection(self) -> str:
        """Names the set of accounts read, so a trend compares like with like."""
        accounts = ",".join(sorted(b.account for b in self.balances))
        return hashlib.sha256(accounts.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrendPoint:
    period_end: date
    closing: Decimal


# --- the run ---------------------------------------------------------------------------------


async def balance_report(
    client: VoipcloudClient,
    accounts: Sequence[str],
    period: Period,
    ctx: Context,
    *,
    concurrency: int = CONCURRENCY,
) -> Reply:
    readings = await read_balances(client, accounts, period, ctx, concurrency=concurrency)
    points = trend(await ctx.history.recent(KIND, HISTORY_SCAN), readings)
    png = None
    if readings.balances:
        # Drawing takes a moment of CPU: keep it off the event loop.
        png = await asyncio.to_thread(chart_png, readings, points)
        await ctx.history.record(KIND, history_entry(readings))
    return build_reply(readings, points, png)


def scheduled_period(today: date) -> Period:
    """A scheduled report covers this month so far; on the 1st, the whole previous month."""
    if today.day == 1:
        return Period.last_month(today)
    return Period.month_to_date(today)


async def read_balances(
    client: VoipcloudClient,
    accounts: Sequence[str],
    period: Period,
    ctx: Context,
    *,
    concurrency: int = CONCURRENCY,
) -> Readings:
    total = len(accounts)
    await announce_wait(client, total, ctx)
    gate = asyncio.Semaphore(concurrency)
    done = failed = 0
    refused: ProviderAuthError | None = None

    async def read(account: str) -> AccountBalance | Unread | None:
        nonlocal done, failed, refused
        async with gate:
            if refused is not None:
                return None  # the key was refused: every other account would be too
            try:
                result = await read_one(client, account, period)
            except ProviderAuthError as exc:
                refused = exc
                return None
        done += 1
        failed += isinstance(result, Unread)
        await ctx.progress(done, total, _progress_label(failed))
        return result

    await ctx.progress(0, total, _progress_label(0))
    tasks = [asyncio.ensure_future(read(account)) for account in accounts]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    if refused is not None:
        raise refused
    return Readings(
        period=period,
        asked=tuple(accounts),
        balances=tuple(r for r in results if isinstance(r, AccountBalance)),
        unread=tuple(r for r in results if isinstance(r, Unread)),
    )


async def read_one(
    client: VoipcloudClient, account: str, period: Period
) -> AccountBalance | Unread:
    """One account's figures, or why they could not be read; a refused key is raised."""
    try:
        statement = await client.customer_balance(account, period.start, period.end, wait=True)
    except ProviderAuthError:
        raise
    except ProviderError as exc:
        return Unread(account, exc.message)
    return figures(account, statement)


def figures(account: str, statement: Statement) -> AccountBalance | Unread:
    opening, closing = statement.opening_balance, statement.closing_balance
    if opening is None or closing is None:
        return Unread(account, "VoIPcloud answered without an opening or closing balance")
    charges = statement.total_charges
    if charges is None:
        parts = (statement.adjustments, statement.call_charges, statement.other_charges)
        charges = sum((p for p in parts if p is not None), Decimal(0))
    return AccountBalance(account, opening, statement.payments or Decimal(0), charges, closing)


async def announce_wait(client: VoipcloudClient, requests: int, ctx: Context) -> None:
    """Tell the requester, before the first read, how long the report will take when the budget
    cannot serve it at once and the wait is more than `SHORT_WAIT`; it is posted when done."""
    budget = client.budget
    await budget.refresh()  # shared by replicas: read the window as it is now, not as last seen
    free = budget.available()
    if budget.limit is None or free is None or free >= requests:
        return
    now = budget.clock()
    finish = budget.eta(requests)
    if finish - now <= SHORT_WAIT:
        return
    local = finish.astimezone(ctx.tz)
    when = f"{local:%H:%M}" if local.date() == ctx.today() else f"{local:%Y-%m-%d %H:%M}"
    left = f"{free} requests left" if free > 0 else "no requests left"
    await ctx.notify(
        f"This report will take about {duration_words(finish - now)}: it reads {requests} "
        f"VoIPcloud balances and the request budget ({budget.limit}) has {left} now. It will "
        f"finish around {when} {ctx.tz.key} and be posted here when done."
    )


def lead(client: VoipcloudClient, requests: int) -> Lead:
    """How long before its time a scheduled report starts so that it can post at that time.

    Worked out from the number of accounts and the budget's limit alone, not its level now:
    the level when the run starts cannot be known when it is scheduled, so this is the longest
    the reads can wait (the window found full at the start, `RateLimit.longest`) and a minute
    for the answers. It is recomputed at every tick, so it follows `VOIPCLOUD_RATE_LIMIT`.
    Commands that spend the budget while the report reads can still make it post late.
    """
    limit = client.budget.limit
    if limit is None:
        return Lead(
            span=READ_ALLOWANCE,
            reason=f"it reads {requests} VoIPcloud balances with no request budget to wait "
            "for, and a minute covers the answers",
        )
    wait = limit.longest(requests)
    return Lead(
        span=wait + READ_ALLOWANCE,
        reason=f"it reads {requests} VoIPcloud balances, which can wait up to "
        f"{duration_words(wait)} for the request budget ({limit}), and a minute for the answers",
    )


def _progress_label(failed: int) -> str:
    return "reading balances" + (f", {failed} not read" if failed else "")


# --- history and trend -------------------------------------------------------------------------


def history_entry(readings: Readings) -> dict[str, Any]:
    totals = readings.totals
    return {
        "period_start": readings.period.start.isoformat(),
        "period_end": readings.period.end.isoformat(),
        "selection": readings.selection,
        "accounts": len(readings.balances),
        "unread": len(readings.unread),
        "opening": str(totals.opening),
        "payments": str(totals.payments),
        "charges": str(totals.charges),
        "closing": str(totals.closing),
    }


def trend(
    records: Sequence[tuple[datetime, Mapping[str, Any]]], readings: Readings
) -> list[TrendPoint]:
    """Total closing balance by end of reported period, for the same accounts, up to this
    report's period (which is the last point); the latest run wins for an equal end."""
    points: dict[date, Decimal] = {}
    for _at, data in records:
        if data.get("selection") != readings.selection:
            continue
        try:
            end = date.fromisoformat(str(data["period_end"]))
            closing = Decimal(str(data["closing"]))
        except (KeyError, ValueError, ArithmeticError):
            continue
        if end < readings.period.end:
            points[end] = closing
    points[readings.period.end] = readings.totals.closing
    ordered = [TrendPoint(end, closing) for end, closing in sorted(points.items())]
    return ordered[-TREND_POINTS:]


# --- what people see -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Writer:
    """Writes a report's amounts exactly as sent, all with the same number of decimals."""

    decimals: int

    def amount(self, value: Decimal) -> str:
        return money.exact(value, decimals=self.decimals)

    def change(self, value: Decimal) -> str:
        return money.exact(value, sign=True, decimals=self.decimals)


def build_reply(readings: Readings, points: Sequence[TrendPoint], png: bytes | None) -> Reply:
    period, balances = readings.period, readings.balances
    asked = len(readings.asked)
    title = f"VoIPcloud balances, {period.label}"
    long = asked > TABLE_ROWS
    files = [csv_file(readings)] if long else []
    if not balances:
        return Reply(
            text=f"*{title}*: none of the {asked} accounts could be read.",
            sections=[_unread_section(readings.unread, long)],
            files=files,
        )
    totals, w = readings.totals, Writer(readings.decimals)
    below = sorted((b for b in balances if b.closing < 0), key=lambda b: (b.closing, b.account))
    count = plural(len(balances), "account")
    headline = f"*{title}*: {count}, closing total *{w.amount(totals.closing)}*"
    if readings.unread:
        headline += f"; {len(readings.unread)} of {asked} could not be read"
    fields = [
        ("Opening balance", w.amount(totals.opening)),
        ("Payments", w.amount(totals.payments)),
        ("Charges", w.amount(totals.charges)),
        ("Closing balance", w.amount(totals.closing)),
        ("Net change", w.change(totals.closing - totals.opening)),
        ("Below zero", f"{len(below)} of {count}"),
    ]
    sections = [_movers_section(balances, w), _below_zero_section(below, long, w)]
    if len(points) > 1:
        before = points[-2]
        sections.append(
            f"Total closing balance *{w.change(totals.closing - before.closing)}* since the "
            f"report for the period ending {before.period_end} ({w.amount(before.closing)})."
        )
    if readings.unread:
        sections.append(_unread_section(readings.unread, long))
    if long:
        sections.append(
            f"The table shows the {TABLE_ROWS} accounts that moved most; the attached CSV has "
            f"all {asked}, with every figure as VoIPcloud sent it."
        )
    if png is not None:
        files.insert(0, _chart_file(period, png))
    return Reply(
        text=headline,
        fields=fields,
        sections=sections,
        table=account_table(balances, w),
        files=files,
    )


def by_movement(balances: Sequence[AccountBalance]) -> list[AccountBalance]:
    return sorted(balances, key=lambda b: (-abs(b.change), b.account))


def account_table(balances: Sequence[AccountBalance], w: Writer) -> Table:
    rows = [
        [
            b.account,
            *(w.amount(a) for a in (b.opening, b.payments, b.charges, b.closing)),
            w.change(b.change),
        ]
        for b in by_movement(balances)[:TABLE_ROWS]
    ]
    return Table(
        columns=["Account", "Opening", "Payments", "Charges", "Closing", "Change"],
        rows=rows,
        align_right=frozenset({1, 2, 3, 4, 5}),
    )


def _named(items: Sequence[str], long: bool) -> str:
    shown = items[:LISTED] if long else items
    more = f" and {len(items) - len(shown)} more in the CSV" if len(items) > len(shown) else ""
    return " · ".join(shown) + more


def _movers_section(balances: Sequence[AccountBalance], w: Writer) -> str:
    moved = [b for b in by_movement(balances) if b.change != 0][:MOVERS]
    if not moved:
        return "No balance moved in the period."
    return "*Biggest movers* (closing − opening): " + " · ".join(
        f"`{b.account}` {w.change(b.change)}" for b in moved
    )


def _below_zero_section(below: Sequence[AccountBalance], long: bool, w: Writer) -> str:
    if not below:
        return f"No account closed below zero ({BELOW_ZERO_RULE})."
    names = _named([f"`{b.account}` {w.amount(b.closing)}" for b in below], long)
    return f"*Below zero at the close* ({BELOW_ZERO_RULE}): {names}"


def _unread_section(unread: Sequence[Unread], long: bool) -> str:
    names = _named([f"`{u.account}` ({u.reason})" for u in unread], long)
    return f"*Not read* ({len(unread)}): {names}"


def _file_stem(period: Period) -> str:
    return f"voipcloud-balances-{period.start.isoformat()}-{period.end.isoformat()}"


def _chart_file(period: Period, png: bytes) -> File:
    return File(
        filename=f"{_file_stem(period)}.png",
        content=png,
        title=f"VoIPcloud balances, {period.label}",
        mime="image/png",
    )


def csv_file(readings: Readings) -> File:
    """Every account asked, in the order asked, figures exactly as VoIPcloud sent them.

    Each row is encoded as UTF-8 as it is written, so the file is held once, as the bytes
    attached, rather than as text, a copy of that text and then its encoding."""
    found = {b.account: b for b in readings.balances}
    missing = {u.account: u for u in readings.unread}
    content = io.BytesIO()
    text = io.TextIOWrapper(content, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(
        ["account", "opening_balance", "payments", "charges", "closing_balance", "change", "note"]
    )
    for account in readings.asked:
        if (b := found.get(account)) is not None:
            amounts = [b.opening, b.payments, b.charges, b.closing, b.change]
            writer.writerow([account, *(money.exact(a) for a in amounts), ""])
        elif (u := missing.get(account)) is not None:
            writer.writerow([account, "", "", "", "", "", f"not read: {u.reason}"])
    text.flush()
    data = content.getvalue()
    text.detach()  # the wrapper would close `content` when collected; it has nothing left
    return File(
        filename=f"{_file_stem(readings.period)}.csv",
        content=data,
        title=f"VoIPcloud balances, {readings.period.label} (every account)",
        mime="text/csv",
    )


def chart_accounts(balances: Sequence[AccountBalance]) -> list[AccountBalance]:
    """The accounts drawn as bars, highest closing balance first: all of them when they fit,
    else the largest balances and (up to `CHART_LOWEST`) the lowest ones below zero."""
    ranked = sorted(balances, key=lambda b: (-b.closing, b.account))
    if len(ranked) <= CHART_BARS:
        return ranked
    lowest = [b for b in ranked[-CHART_LOWEST:] if b.closing < 0]
    return ranked[: CHART_BARS - len(lowest)] + lowest


def chart_png(readings: Readings, points: Sequence[TrendPoint]) -> bytes:
    # matplotlib takes half a second to import: load it only when a report is drawn.
    from commands.voipcloud import chart

    balances, w = readings.balances, Writer(readings.decimals)
    shown = chart_accounts(balances)
    subtitle = plural(len(balances), "account")
    if len(shown) < len(balances):
        drawn = set(shown)
        rest = Totals.of([b for b in balances if b not in drawn])
        lowest = sum(1 for b in shown if b.closing < 0)
        which = f"the {len(shown) - lowest} highest"
        which += f" and {lowest} lowest" if lowest else ""
        subtitle = (
            f"{which} closing balances of {plural(len(balances), 'account')}; the other "
            f"{len(balances) - len(shown)} close at {w.amount(rest.closing)} in all, "
            f"charged {w.amount(rest.charges)}"
        )
    if readings.unread:
        subtitle += f"; {len(readings.unread)} not read"
    return chart.render(
        title=f"VoIPcloud balances — {readings.period.label}",
        subtitle=subtitle,
        accounts=[b.account for b in shown],
        closing=[b.closing for b in shown],
        charges=[b.charges for b in shown],
        trend=[(p.period_end, p.closing) for p in points],
        write=w.amount,  # the labels read exactly as the table and the totals do
    )
