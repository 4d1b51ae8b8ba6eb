"""VoIPcloud payloads: the `data` object of `{"code": 200, "data": {…}}`.

Amounts arrive as JSON numbers; the client parses them straight into `Decimal`, so a balance
keeps the precision it was sent with (`245.71293`) and a credit limit may be negative (`-55`).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

# The documented balance figures, in the order people read a statement.
STATEMENT_LINES: tuple[tuple[str, str], ...] = (
    ("opening_balance", "Opening balance"),
    ("payments", "Payments"),
    ("adjustments", "Adjustments"),
    ("call_charges", "Call charges"),
    ("other_charges", "Other charges"),
    ("total_charges", "Total charges"),
    ("closing_balance", "Closing balance"),
)


class Statement(BaseModel):
    """A balance for a period. The customer form is documented; the partner form is assumed
    to be the same, so every figure is optional and shown only when sent."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    opening_balance: Decimal | None = None
    payments: Decimal | None = None
    adjustments: Decimal | None = None
    call_charges: Decimal | None = None
    other_charges: Decimal | None = None
    total_charges: Decimal | None = None
    closing_balance: Decimal | None = None

    def lines(self) -> list[tuple[str, Decimal]]:
        return [
            (label, value)
            for name, label in STATEMENT_LINES
            if (value := getattr(self, name)) is not None
        ]


class Transfer(BaseModel):
    """The customer's position after a move of funds."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    customer_balance: Decimal
    customer_credit_limit: Decimal


class Registration(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    account_number: str = Field(
        validation_alias=AliasChoices("account_number", "account", "customer_account_number")
    )
    message: str | None = None


class LoginLink(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(validation_alias=AliasChoices("url", "login_url", "link"))


class Notice(BaseModel):
    """What confirm-email and reset-password answer: at most a message."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message: str | None = None
