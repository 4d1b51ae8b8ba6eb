"""The report's chart: a real PNG that decodes, a bounded number of bars however many accounts,
and the trend drawn from the history."""

from __future__ import annotations

import io
from decimal import Decimal

import matplotlib.image
import pytest

from commands.base import MemoryHistory, Reply
from commands.types import Period
from commands.voipcloud import report
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.reports import (
    accounts_text,
    file_named,
    report_context,
    run_billing,
)
from tests.support.voipcloud import NOW, TODAY, open_client

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decoded(reply: Reply) -> tuple[int, int]:
    """(width, height) in pixels of the reply's chart, read back by matplotlib's PNG decoder."""
    png = file_named(reply, ".png")
    assert png.mime == "image/png"
    assert png.content.startswith(PNG_SIGNATURE)
    pixels = matplotlib.image.imread(io.BytesIO(png.content), format="png")
    height, width = pixels.shape[:2]
    assert pixels.std() > 0, "the image is blank"
    return width, height


async def report_over(population: int, history: MemoryHistory | None = None) -> Reply:
    sandbox = VoipcloudSandbox(today=lambda: TODAY, population=population)
    accounts = accounts_text(10023, 10023 + population - 1)
    return await run_billing(
        open_client(sandbox),
        f"report balances accounts={accounts}",
        report_context(history=history),
    )


async def test_chart_is_a_png_that_decodes() -> None:
    reply = await report_over(3)
    width, height = decoded(reply)
    assert width == 1200
    assert 400 < height < 1500
    png = file_named(reply, ".png")
    assert png.filename == "voipcloud-balances-2026-11-01-2026-11-17.png"
    assert png.title == "VoIPcloud balances, 2026-11-01..2026-11-17"


async def test_chart_size_is_bounded_for_200_accounts() -> None:
    few, many = await report_over(report.CHART_BARS), await report_over(200)
    # 200 accounts draw no more bars than 25 do, so the chart is no taller.
    assert decoded(many) == decoded(few)


def balance(account: str, closing: str) -> report.AccountBalance:
    return report.AccountBalance(account, Decimal(0), Decimal(0), Decimal(1), Decimal(closing))


def test_chart_draws_the_highest_and_the_lowest_below_zero_balances() -> None:
    balances = [balance(str(n), str(n - 100)) for n in range(200)]  # -100 … 99
    shown = report.chart_accounts(balances)
    closings = [b.closing for b in shown]
    assert len(shown) == report.CHART_BARS
    assert closings == sorted(closings, reverse=True)
    lowest = report.CHART_LOWEST
    assert closings[: report.CHART_BARS - lowest] == [
        Decimal(v) for v in range(99, 99 - (report.CHART_BARS - lowest), -1)
    ]
    assert closings[-lowest:] == [Decimal(v) for v in range(-100 + lowest - 1, -101, -1)]


def test_chart_keeps_to_the_highest_when_none_is_below_zero() -> None:
    balances = [balance(str(n), str(n)) for n in range(40)]
    shown = report.chart_accounts(balances)
    assert [b.closing for b in shown] == [Decimal(v) for v in range(39, 39 - report.CHART_BARS, -1)]


def test_every_account_is_drawn_when_they_fit() -> None:
    balances = [balance("1", "-5"), balance("2", "10"), balance("3", "0")]
    assert [b.account for b in report.chart_accounts(balances)] == ["2", "3", "1"]


@pytest.mark.parametrize("points", [1, 5])
async def test_chart_renders_with_a_trend_of_any_length(points: int) -> None:
    history = MemoryHistory(clock=lambda: NOW)
    readings = report.Readings(
        period=Period(TODAY.replace(day=1), TODAY),
        asked=("10023",),
        balances=(balance("10023", "12.5"),),
        unread=(),
    )
    for day in range(1, points):
        entry = report.history_entry(readings) | {"period_end": f"2026-10-{day:02d}"}
        await history.record(report.KIND, entry)
    trend = report.trend(await history.recent(report.KIND, 50), readings)
    assert len(trend) == points
    png = report.chart_png(readings, trend)
    assert png.startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape[1] == 1200
