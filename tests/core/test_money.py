"""The one money formatter: exact figures, aligned columns, forms that never round, half-up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from commands import money


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("242.08793"), "242.08793"),
        (Decimal("57"), "57"),
        (Decimal("-55"), "-55"),
        (Decimal("1E+3"), "1000"),  # never in exponent form
        (Decimal("0E-5"), "0.00000"),
        (Decimal("-0.00"), "0.00"),  # no negative zero
        (Decimal("99999999999999999999"), "99999999999999999999"),
    ],
)
def test_exact_writes_the_amount_as_sent(amount: Decimal, text: str) -> None:
    assert money.exact(amount) == text


def test_exact_signs_only_what_is_above_zero() -> None:
    assert money.exact(Decimal("12.5"), sign=True) == "+12.5"
    assert money.exact(Decimal("-12.5"), sign=True) == "-12.5"
    assert money.exact(Decimal("0.00"), sign=True) == "0.00"


def test_a_column_is_padded_to_its_most_decimals_and_keeps_every_digit() -> None:
    shown = money.column([Decimal("242.08793"), Decimal("57"), Decimal("48.125")])
    assert shown == ["242.08793", "57.00000", "48.12500"]
    # Padding adds zeros only: every figure reads back as the same amount.
    assert [Decimal(s) for s in shown] == [Decimal("242.08793"), 57, Decimal("48.125")]
    assert len({s.index(".") - len(s) for s in shown}) == 1  # the dots line up right-aligned


def test_an_empty_column_and_a_signed_column() -> None:
    assert money.column([]) == []
    assert money.column([Decimal("1.5"), Decimal("-2")], sign=True) == ["+1.5", "-2.0"]


def test_fixed_pads_for_a_form_and_refuses_to_round() -> None:
    assert money.fixed(Decimal("50"), 2) == "50.00"
    assert money.fixed(Decimal("-12.5"), 2) == "-12.50"
    assert money.fixed(Decimal("0.01"), 2) == "0.01"
    with pytest.raises(ValueError, match=r"^1\.005 has more than 2 decimals$"):
        money.fixed(Decimal("1.005"), 2)


@pytest.mark.parametrize(
    ("amount", "cents"),
    [
        (Decimal("60.625"), Decimal("60.63")),  # half-up, where half-even gives 60.62
        (Decimal("60.615"), Decimal("60.62")),
        (Decimal("-60.625"), Decimal("-60.63")),
        (Decimal("242.08793"), Decimal("242.09")),
        (Decimal("-0.004"), Decimal("0.00")),
    ],
)
def test_rounding_is_half_up(amount: Decimal, cents: Decimal) -> None:
    assert money.rounded(amount) == cents
    assert str(money.rounded(amount)) == str(cents)


def test_places_counts_the_decimals_written() -> None:
    assert [money.places(Decimal(t)) for t in ("48.125", "57", "1E+2", "0.10")] == [3, 0, 0, 2]
