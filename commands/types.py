"""Value types shared by commands: money, dates, periods, identifiers, yes/no.

Each type is an `Annotated` pydantic type whose validator raises `ValueError` with a sentence a
person can act on; `Label` gives the word shown in help (`<amount>`, `<YYYY-MM-DD>`).
Money is `Decimal`, never float.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


@dataclass(frozen=True)
class Label:
    """The word help shows for a value of this type."""

    text: str


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    raise ValueError("expected text")


# --- numbers ---------------------------------------------------------------------------------


def parse_decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError("amounts must be given as text or Decimal, never float")
    if isinstance(value, Decimal):
        return value
    raw = _text(value).replace(",", ".") if isinstance(value, str) else str(value)
    if not re.fullmatch(r"[+-]?\d+(\.\d+)?", raw):
        raise ValueError(f"'{raw}' is not a number (use digits and a dot, like 1500.00)")
    try:
        return Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - the pattern above already rules it out
        raise ValueError(f"'{raw}' is not a number") from exc


def _finite(amount: Decimal) -> Decimal:
    if not amount.is_finite():
        raise ValueError(f"'{amount}' is not a number")
    return amount


def _decimal_places(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def positive_amount(value: Any) -> Decimal:
    amount = _finite(parse_decimal(value))
    if _decimal_places(amount) > 2:
        raise ValueError("use at most two decimals")
    if amount <= 0:
        raise ValueError("must be greater than zero")
    return amount


def signed_amount(value: Any) -> Decimal:
    amount = _finite(parse_decimal(value))
    if _decimal_places(amount) > 2:
        raise ValueError("use at most two decimals")
    if amount == 0:
        raise ValueError("must not be zero (the sign gives the direction)")
    return amount


def positive_int(value: Any) -> int:
    raw = _text(value) if not isinstance(value, int) else str(value)
    if not re.fullmatch(r"\d+", raw) or int(raw) <= 0:
        raise ValueError(f"'{raw}' is not a positive whole number")
    return int(raw)


def digits(value: Any) -> str:
    raw = _text(value)
    if not re.fullmatch(r"\d{1,20}", raw):
        raise ValueError(f"'{raw}' is not a number (digits only)")
    return raw


# Positive amount with at most two decimals: invoice sums.
Money = Annotated[Decimal, BeforeValidator(positive_amount), Label("amount"), PlainSerializer(str)]
# Non-zero amount with at most two decimals whose sign means something: transfers.
SignedMoney = Annotated[
    Decimal, BeforeValidator(signed_amount), Label("±amount"), PlainSerializer(str)
]
PositiveInt = Annotated[int, BeforeValidator(positive_int), Label("number")]
Digits = Annotated[str, BeforeValidator(digits), Label("number")]


# --- yes/no ----------------------------------------------------------------------------------


def yes_no(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raw = _text(value).lower()
    if raw in {"yes", "y", "true", "1", "on"}:
        return True
    if raw in {"no", "n", "false", "0", "off"}:
        return False
    raise ValueError(f"'{raw}' is not yes or no")


YesNo = Annotated[bool, BeforeValidator(yes_no), Label("yes/no")]


# --- dates and periods -----------------------------------------------------------------------


def iso_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    raw = _text(value)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise ValueError(f"'{raw}' is not a date in the form YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"'{raw}' is not a real date") from exc


IsoDate = Annotated[date, BeforeValidator(iso_date), Label("YYYY-MM-DD"), PlainSerializer(str)]


@dataclass(frozen=True)
class Period:
    """An inclusive range of days."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    @property
    def label(self) -> str:
        if self.start.day == 1 and self.end == month_end(self.start):
            return self.start.strftime("%B %Y")
        return str(self)

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        first = date(year, month, 1)
        return cls(first, month_end(first))

    @classmethod
    def month_to_date(cls, today: date) -> Period:
        return cls(today.replace(day=1), today)

    @classmethod
    def last_month(cls, today: date) -> Period:
        last_day_previous = today.replace(day=1) - timedelta(days=1)
        return cls.month(last_day_previous.year, last_day_previous.month)


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def parse_period(raw: str, *, today: date) -> Period:
    """`YYYY-MM`, `last-month` or `YYYY-MM-DD..YYYY-MM-DD`; never ends after today."""
    text = raw.strip().lower()
    if text == "last-month":
        period = Period.last_month(today)
    elif re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise ValueError(f"'{raw}' has no month {month}")
        period = Period.month(year, month)
    elif ".." in text:
        first, _, last = text.partition("..")
        period = Period(iso_date(first), iso_date(last))
    else:
        raise ValueError(f"'{raw}' is not a period (YYYY-MM, last-month or YYYY-MM-DD..YYYY-MM-DD)")
    if period.start > today:
        raise ValueError(f"the period {period} starts in the future")
    if period.end > today:
        raise ValueError(f"the period {period} has not ended yet (today is {today})")
    return period


def period_text(value: Any) -> str:
    """Syntax check only; the dates are checked against today by the handler's context."""
    raw = _text(value)
    parse_period(raw, today=date.max)
    return raw


PeriodText = Annotated[
    str, BeforeValidator(period_text), Label("YYYY-MM|last-month|YYYY-MM-DD..YYYY-MM-DD")
]


# --- identifiers and lists ---------------------------------------------------------------------


def id_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        items = [part.strip() for part in _text(value).split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError("the list is empty")
    bad = [item for item in items if not re.fullmatch(r"\d{1,20}", item)]
    if bad:
        raise ValueError(f"not numbers: {', '.join(bad[:5])}")
    return tuple(dict.fromkeys(items))


IdList = Annotated[
    tuple[str, ...],
    BeforeValidator(id_list),
    Label("id,id,…"),
    PlainSerializer(lambda ids: ",".join(ids)),
]
