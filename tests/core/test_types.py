"""Shared value types: each accepts what people type and refuses the rest with a sentence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from commands.types import (
    COMMA,
    MAX_AMOUNT,
    Digits,
    IdList,
    IsoDate,
    Money,
    Period,
    PeriodText,
    PositiveInt,
    SignedMoney,
    YesNo,
    parse_period,
)


def valid(kind: Any, value: Any) -> Any:
    return TypeAdapter(kind).validate_python(value)


def refusal(kind: Any, value: Any) -> str:
    """The sentence a person would see for `value`."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(kind).validate_python(value)
    [error] = caught.value.errors()
    return str(error["msg"]).removeprefix("Value error, ")


# --- money -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "amount"),
    [
        ("1500", Decimal("1500")),
        ("1500.00", Decimal("1500.00")),
        ("0.01", Decimal("0.01")),
        ("1000000", Decimal("1000000")),  # the ceiling itself
        (" 7.5 ", Decimal("7.5")),
        ("+3", Decimal("3")),
        (Decimal("9.99"), Decimal("9.99")),
        (42, Decimal("42")),
    ],
)
def test_money_accepts_positive_amounts(typed: Any, amount: Decimal) -> None:
    result = valid(Money, typed)
    assert isinstance(result, Decimal)
    assert result == amount
    assert str(result) == str(amount)  # the places given are kept


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("0", "must be greater than zero"),
        ("0.00", "must be greater than zero"),
        ("-5", "must be greater than zero"),
        ("1.234", "use at most two decimals"),
        (Decimal("1.005"), "use at most two decimals"),
        ("abc", "'abc' is not a number (use digits and a dot, like 1500.00)"),
        ("1,50", f"'1,50' has a comma: {COMMA}"),
        ("1,000", f"'1,000' has a comma: {COMMA}"),
        ("1,000.50", f"'1,000.50' has a comma: {COMMA}"),
        (
            "99999999999999999999",
            "99999999999999999999 is too large: the most one command may move or invoice is "
            "1000000; check the amount, or split it",
        ),
        ("1000000.01", "1000000.01 is too large: the most one command may move or invoice is"),
        ("1e3", "'1e3' is not a number (use digits and a dot, like 1500.00)"),
        ("", "'' is not a number (use digits and a dot, like 1500.00)"),
        ("12 EUR", "'12 EUR' is not a number (use digits and a dot, like 1500.00)"),
        (1.5, "amounts must be given as text or Decimal, never float"),
        (True, "'True' is not a number (use digits and a dot, like 1500.00)"),
    ],
)
def test_money_refusals(typed: Any, sentence: str) -> None:
    assert refusal(Money, typed).startswith(sentence)


def test_the_comma_sentence_says_to_use_a_dot_and_no_thousands_separators() -> None:
    assert "with a dot for decimals and no thousands separators" in COMMA


def test_money_is_serialized_as_exact_text() -> None:
    assert TypeAdapter(Money).dump_python(Decimal("10.50")) == "10.50"
    assert TypeAdapter(Money).dump_json(Decimal("0.10")) == b'"0.10"'


@pytest.mark.parametrize(
    ("typed", "amount"),
    [("-25.50", Decimal("-25.50")), ("25", Decimal("25")), ("-1000000", -MAX_AMOUNT)],
)
def test_signed_money_keeps_the_sign(typed: str, amount: Decimal) -> None:
    assert valid(SignedMoney, typed) == amount


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("0", "must not be zero (the sign gives the direction)"),
        ("-0.00", "must not be zero (the sign gives the direction)"),
        ("-1.005", "use at most two decimals"),
        ("- 5", "'- 5' is not a number (use digits and a dot, like 1500.00)"),
        ("-0,01", f"'-0,01' has a comma: {COMMA}"),
        ("-1000000.01", "-1000000.01 is too large: the most one command may move or invoice"),
        (-2.5, "amounts must be given as text or Decimal, never float"),
    ],
)
def test_signed_money_refusals(typed: Any, sentence: str) -> None:
    assert refusal(SignedMoney, typed).startswith(sentence)


def test_a_decimal_nan_is_refused_as_money_not_crashed() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Money).validate_python(Decimal("NaN"))


def test_a_decimal_nan_is_refused_as_signed_money() -> None:
    assert refusal(SignedMoney, Decimal("NaN")) == "'NaN' is not a number"


def test_decimal_infinity_is_refused() -> None:
    assert refusal(Money, Decimal("Infinity")) == "'Infinity' is not a number"


# --- whole numbers, digits, yes/no --------------------------------------------------------------


@pytest.mark.parametrize(("typed", "number"), [("42", 42), (" 7 ", 7), ("007", 7), (3, 3)])
def test_positive_int_accepts(typed: Any, number: int) -> None:
    assert valid(PositiveInt, typed) == number


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("0", "'0' is not a positive whole number"),
        ("-3", "'-3' is not a positive whole number"),
        ("1.5", "'1.5' is not a positive whole number"),
        ("abc", "'abc' is not a positive whole number"),
        ("", "'' is not a positive whole number"),
        (0, "'0' is not a positive whole number"),
        (True, "'True' is not a positive whole number"),
        (2.0, "expected text"),
    ],
)
def test_positive_int_refusals(typed: Any, sentence: str) -> None:
    assert refusal(PositiveInt, typed) == sentence


def test_digits_keep_leading_zeros_as_text() -> None:
    assert valid(Digits, "000123") == "000123"
    assert valid(Digits, 505) == "505"
    assert valid(Digits, "9" * 20) == "9" * 20


@pytest.mark.parametrize("typed", ["12a", "", "-1", "1.0", "9" * 21, "1 2"])
def test_digits_refusals(typed: str) -> None:
    assert refusal(Digits, typed) == f"'{typed.strip()}' is not a number (digits only)"


@pytest.mark.parametrize("typed", ["yes", "Y", "TRUE", "1", "on", True, 1])
def test_yes(typed: Any) -> None:
    assert valid(YesNo, typed) is True


@pytest.mark.parametrize("typed", ["no", "N", "false", "0", "Off", False, 0])
def test_no(typed: Any) -> None:
    assert valid(YesNo, typed) is False


@pytest.mark.parametrize("typed", ["maybe", "", "2", "oui"])
def test_yes_no_refusals(typed: str) -> None:
    assert refusal(YesNo, typed) == f"'{typed.lower()}' is not yes or no"


# --- dates and periods ------------------------------------------------------------------------


def test_iso_date() -> None:
    assert valid(IsoDate, "2024-02-29") == date(2024, 2, 29)
    assert valid(IsoDate, date(2024, 1, 1)) == date(2024, 1, 1)
    assert TypeAdapter(IsoDate).dump_python(date(2024, 3, 5)) == "2024-03-05"


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("2023-02-29", "'2023-02-29' is not a real date"),
        ("2024-13-01", "'2024-13-01' is not a real date"),
        ("2024/01/01", "'2024/01/01' is not a date in the form YYYY-MM-DD"),
        ("20240101", "'20240101' is not a date in the form YYYY-MM-DD"),
        ("1 Jan 2024", "'1 Jan 2024' is not a date in the form YYYY-MM-DD"),
        ("2024-1-5", "'2024-1-5' is not a date in the form YYYY-MM-DD"),
    ],
)
def test_iso_date_refusals(typed: str, sentence: str) -> None:
    assert refusal(IsoDate, typed) == sentence


TODAY = date(2024, 3, 15)


@pytest.mark.parametrize(
    ("typed", "start", "end"),
    [
        ("2024-02", date(2024, 2, 1), date(2024, 2, 29)),
        ("2023-02", date(2023, 2, 1), date(2023, 2, 28)),
        ("2023-12", date(2023, 12, 1), date(2023, 12, 31)),
        ("last-month", date(2024, 2, 1), date(2024, 2, 29)),
        ("Last-Month", date(2024, 2, 1), date(2024, 2, 29)),
        ("2024-03-01..2024-03-15", date(2024, 3, 1), date(2024, 3, 15)),
        ("2024-01-31..2024-01-31", date(2024, 1, 31), date(2024, 1, 31)),
        (" 2024-01-01 .. 2024-01-10 ", date(2024, 1, 1), date(2024, 1, 10)),
    ],
)
def test_parse_period(typed: str, start: date, end: date) -> None:
    assert parse_period(typed, today=TODAY) == Period(start, end)


def test_last_month_crosses_the_year_boundary() -> None:
    assert parse_period("last-month", today=date(2024, 1, 1)) == Period(
        date(2023, 12, 1), date(2023, 12, 31)
    )
    assert Period.last_month(date(2025, 1, 31)) == Period(date(2024, 12, 1), date(2024, 12, 31))


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("2024-13", "'2024-13' has no month 13"),
        ("2024-00", "'2024-00' has no month 0"),
        ("2024-03", "the period 2024-03-01..2024-03-31 has not ended yet (today is 2024-03-15)"),
        ("2024-04", "the period 2024-04-01..2024-04-30 starts in the future"),
        ("2024-03-10..2024-03-16", "the period 2024-03-10..2024-03-16 has not ended yet"),
        ("2024-02-10..2024-02-01", "the period ends (2024-02-01) before it starts (2024-02-10)"),
        ("2024-02-01..soon", "'soon' is not a date in the form YYYY-MM-DD"),
        ("2024-02-30..2024-03-01", "'2024-02-30' is not a real date"),
        ("2024-1", "'2024-1' is not a period (YYYY-MM, last-month or YYYY-MM-DD..YYYY-MM-DD)"),
        ("february", "'february' is not a period"),
        ("", "'' is not a period"),
    ],
)
def test_parse_period_refusals(typed: str, sentence: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_period(typed, today=TODAY)
    assert str(caught.value).startswith(sentence)


def test_period_label_and_text() -> None:
    assert Period.month(2024, 2).label == "February 2024"
    partial = Period(date(2024, 2, 1), date(2024, 2, 10))
    assert partial.label == str(partial) == "2024-02-01..2024-02-10"
    assert Period.month_to_date(TODAY) == Period(date(2024, 3, 1), TODAY)


def test_period_text_checks_syntax_only() -> None:
    # Today is applied by the handler; the field only checks the form.
    assert valid(PeriodText, "2999-01") == "2999-01"
    assert valid(PeriodText, " last-month ") == "last-month"
    assert refusal(PeriodText, "2024-13") == "'2024-13' has no month 13"
    assert refusal(PeriodText, "2024-02-10..2024-02-01").startswith("the period ends (2024-02-01)")


# --- id lists ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "ids"),
    [
        ("3,1,3", ("3", "1")),
        (" 5 , 6 ,", ("5", "6")),
        ("007", ("007",)),
        ([1, 2, 1], ("1", "2")),
        (("9",), ("9",)),
    ],
)
def test_id_list_dedupes_in_order(typed: Any, ids: tuple[str, ...]) -> None:
    assert valid(IdList, typed) == ids


@pytest.mark.parametrize(
    ("typed", "sentence"),
    [
        ("", "the list is empty"),
        (" , ,", "the list is empty"),
        ([], "the list is empty"),
        ("1,a,2,b", "not numbers: a, b"),
        ("1;2", "not numbers: 1;2"),
        ("a,b,c,d,e,f,g", "not numbers: a, b, c, d, e"),
    ],
)
def test_id_list_refusals(typed: Any, sentence: str) -> None:
    assert refusal(IdList, typed) == sentence


def test_id_list_is_serialized_as_commas() -> None:
    assert TypeAdapter(IdList).dump_python(("1", "2")) == "1,2"
