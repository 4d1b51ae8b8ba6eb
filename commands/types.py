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

from pydantic import BaseModel, BeforeValidator, PlainSerializer

from commands.money import exact, places


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

# The largest amount one command may move or invoice. Far above any single transfer or invoice
# the team makes, it stops a slip of the keyboard (`99999999999999999999`) before any approval
# card is posted or any provider is asked.
MAX_AMOUNT = Decimal(1_000_000)
MONEY_DECIMALS = 2  # transfers and invoices are in cents

COMMA = (
    "write amounts with a dot for decimals and no thousands separators, like 1500.50 "
    "(commas are not accepted)"
)


def parse_decimal(value: Any) -> Decimal:
    if isinstance(value, float):
        raise ValueError("amounts must be given as text or Decimal, never float")
    if isinstance(value, Decimal):
        return value
    raw = _text(value) if isinstance(value, str) else str(value)
    if "," in raw:
        # `1,50` (a decimal comma), `1,000` and `1,000.50` (thousands separators) would each
        # be a guess: refuse them all rather than read an amount someone did not mean.
        raise ValueError(f"'{raw}' has a comma: {COMMA}")
    if not re.fullmatch(r"[+-]?\d+(\.\d+)?", raw):
        raise ValueError(f"'{raw}' is not a number (use digits and a dot, like 1500.00)")
    try:
        return Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - the pattern above already rules it out
        raise ValueError(f"'{raw}' is not a number") from exc


def _money(value: Any) -> Decimal:
    """A finite amount in cents, no larger than `MAX_AMOUNT` either way."""
    amount = parse_decimal(value)
    if not amount.is_finite():
        raise ValueError(f"'{amount}' is not a number")
    if places(amount) > MONEY_DECIMALS:
        raise ValueError("use at most two decimals")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(
            f"{exact(amount)} is too large: the most one command may move or invoice is "
            f"{exact(MAX_AMOUNT)}; check the amount, or split it"
        )
    return amount


def positive_amount(value: Any) -> Decimal:
    amount = _money(value)
    if amount <= 0:
        raise ValueError("must be greater than zero")
    return amount


def signed_amount(value: Any) -> Decimal:
    amount = _money(value)
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


# Positive amount with at most two decimals, at most MAX_AMOUNT: invoice sums.
Money = Annotated[Decimal, BeforeValidator(positive_amount), Label("amount"), PlainSerializer(str)]
# Non-zero amount with at most two decimals and at most MAX_AMOUNT either way, whose sign
# means something: transfers.
SignedMoney = Annotated[
    Decimal, BeforeValidator(signed_amount), Label("±amount"), PlainSerializer(str)
]


def money_fields(model: type[BaseModel]) -> list[str]:
    """Every argument declared as `Money` or `SignedMoney`, in declaration order."""
    return [
        name
        for name, info in model.model_fields.items()
        if any(
            isinstance(item, BeforeValidator) and item.func in (positive_amount, signed_amount)
            for item in info.metadata
        )
    ]


def money_field(model: type[BaseModel]) -> str | None:
    """The first argument declared as `Money` or `SignedMoney`, or None: the amount a request
    moves or invoices (an approval card's metadata reports it)."""
    return next(iter(money_fields(model)), None)


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
