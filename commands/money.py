"""How the product writes an amount: the one place that turns a `Decimal` into text.

- `exact`: the figure as the provider sent it (`242.08793`, `57`, `-55`), never in exponent form.
  Tables, CSV files, chart labels, totals and sentences all use it, so they agree to the last
  digit and a total is the exact sum of its rows.
- `column`: a column of exact figures padded with zeros to the most decimals present
  (`242.08793`, ` 57.00000`, ` 48.12500`), so they line up right-aligned. Padding never rounds.
- `fixed`: an amount written with a given number of decimals for a provider's form
  (`50.00`); refuses to drop a digit instead of rounding it away.
- `rounded`: the only rounding in the product, half-up (as people round money), for display.

The `decimal` module does the arithmetic; these few lines only choose the text, which no
formatting library (Babel, py-moneyed) does without rounding half-even by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def places(amount: Decimal) -> int:
    """How many decimals the amount was written with (`48.125` → 3, `57` → 0)."""
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _positive_zero(amount: Decimal) -> Decimal:
    # `+ 0` turns -0.00 into 0.00 and keeps the places.
    return amount + 0 if amount == 0 else amount


def _pad(amount: Decimal, decimals: int) -> Decimal:
    if decimals <= places(amount):
        return amount
    return amount.quantize(Decimal(1).scaleb(-decimals))  # more places: exact, never rounds


def exact(amount: Decimal, *, sign: bool = False, decimals: int = 0) -> str:
    """The amount as sent, at least `decimals` places; `sign` writes + before a positive one."""
    text = format(_pad(_positive_zero(amount), decimals), "f")
    return f"+{text}" if sign and amount > 0 else text


def column(amounts: Sequence[Decimal], *, sign: bool = False) -> list[str]:
    """Exact figures padded to the most decimals among them, for a right-aligned column."""
    width = max((places(a) for a in amounts), default=0)
    return [exact(a, sign=sign, decimals=width) for a in amounts]


def fixed(amount: Decimal, decimals: int) -> str:
    """Exactly `decimals` places, for a provider's form; an amount with more is refused."""
    if places(amount) > decimals:
        raise ValueError(f"{exact(amount)} has more than {decimals} decimals")
    return exact(amount, decimals=decimals)


def rounded(amount: Decimal, step: Decimal = CENT) -> Decimal:
    """Rounded half-up to `step` (a cent by default): for display only, never for sums."""
    return _positive_zero(amount.quantize(step, rounding=ROUND_HALF_UP))
