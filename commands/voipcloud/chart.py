"""The balance report's chart, drawn on matplotlib's Agg canvas (no pyplot, no global state), so
it renders headless and from a worker thread.

Top: one horizontal bar per account, closing balance on the left and the period's charges on the
right, sorted, values written on the bars. Bottom: the total closing balance at the end of each
reported period, from the report history.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from commands import money

WIDTH_INCHES = 12.0
BAR_INCHES = 0.3
TREND_INCHES = 3.0
DPI = 100

BLUE = "#2f6db5"
RED = "#c0392b"
ORANGE = "#e08a1e"
GREY = "#666666"


def render(
    *,
    title: str,
    subtitle: str,
    accounts: Sequence[str],
    closing: Sequence[Decimal],
    charges: Sequence[Decimal],
    trend: Sequence[tuple[date, Decimal]],
    write: Callable[[Decimal], str] = money.exact,
) -> bytes:
    """A PNG. `accounts`, `closing` and `charges` run in parallel, in reading order (top first);
    `trend` is (end of reported period, total closing balance), oldest first. `write` turns
    each figure into its label, from the Decimal, so labels read as the report's text does."""
    top = max(2.0, BAR_INCHES * len(accounts) + 1.2)
    figure = Figure(figsize=(WIDTH_INCHES, top + TREND_INCHES + 1.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches the headless Agg canvas to the figure
    grid = figure.add_gridspec(2, 2, height_ratios=[top, TREND_INCHES])
    closing_axes = figure.add_subplot(grid[0, 0])
    charges_axes = figure.add_subplot(grid[0, 1], sharey=closing_axes)
    trend_axes = figure.add_subplot(grid[1, :])
    figure.suptitle(f"{title}\n{subtitle}", fontsize=13)

    rows = list(range(len(accounts)))
    closing_values = _plotted(closing)
    _bars(
        closing_axes,
        rows,
        closing_values,
        labels=[write(v) for v in closing],
        colors=[RED if v < 0 else BLUE for v in closing_values],
        title="Closing balance per account",
        xlabel="Closing balance",
    )
    closing_axes.set_yticks(rows, labels=list(accounts))
    closing_axes.set_ylabel("Account")
    closing_axes.invert_yaxis()  # shared with the charges axes: first account on top in both

    _bars(
        charges_axes,
        rows,
        _plotted(charges),
        labels=[write(v) for v in charges],
        colors=[ORANGE],
        title="Charges per account in the period",
        xlabel="Charges",
    )
    charges_axes.tick_params(labelleft=False)

    _trend(trend_axes, trend, write)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plotted(values: Sequence[Decimal]) -> list[float]:
    # Plotting needs floats; every figure people read is formatted from the Decimal elsewhere.
    return [float(v) for v in values]


def _tick(value: float, _position: Any = None) -> str:
    # An axis tick is a position matplotlib chose, not a figure anyone sent: written to the
    # cent, half-up, through the same formatter, with no trailing zeros.
    return money.exact(money.rounded(Decimal(str(float(value)))).normalize())


def _bars(
    axes: Any,
    rows: list[int],
    values: list[float],
    *,
    labels: list[str],
    colors: list[str],
    title: str,
    xlabel: str,
) -> None:
    bars = axes.barh(rows, values, color=colors, height=0.7)
    axes.bar_label(bars, labels=labels, padding=3, fontsize=8)
    axes.axvline(0, color=GREY, linewidth=0.8)
    axes.margins(x=0.2)
    axes.xaxis.set_major_formatter(FuncFormatter(_tick))
    axes.grid(axis="x", alpha=0.3)
    axes.set_title(title)
    axes.set_xlabel(xlabel)


def _trend(
    axes: Any, trend: Sequence[tuple[date, Decimal]], write: Callable[[Decimal], str]
) -> None:
    # One step per report, labelled with its period's last day: reports run on a schedule, and
    # a handful of labelled points reads better than a calendar axis.
    steps = list(range(len(trend)))
    values = _plotted([total for _, total in trend])
    axes.plot(steps, values, marker="o", color=BLUE)
    for step, value, (_day, total) in zip(steps, values, trend, strict=True):
        axes.annotate(
            write(total),
            (step, value),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
        )
    axes.set_xticks(steps, labels=[day.isoformat() for day, _ in trend], fontsize=8)
    axes.yaxis.set_major_formatter(FuncFormatter(_tick))
    axes.margins(x=0.05 if len(steps) > 1 else 1.0, y=0.25)
    axes.grid(alpha=0.3)
    first = (
        " (the first report for these accounts: the trend starts here)" if len(trend) < 2 else ""
    )
    axes.set_title(f"Total closing balance over past reports{first}")
    axes.set_xlabel("End of the reported period")
    axes.set_ylabel("Total closing balance")
