"""SMSC values: the sub-client reference, the error body and the created invoice."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator

from commands.types import Label

_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_ID = re.compile(r"(?i)id:\s*(\d{1,20})")


def sub_client(value: Any) -> str:
    """A sub-client login (`acme`) or `id:<n>` for its numeric ID, normalised (`id:101`)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("expected a sub-client login or id:<n>")
    raw = str(value).strip()
    if not raw:
        raise ValueError("is required")
    if raw.lower().startswith("id:"):
        match = _ID.fullmatch(raw)
        if match is None or int(match.group(1)) == 0:
            raise ValueError(f"'{raw}' is not a sub-client ID: write id: and digits, like id:101")
        return f"id:{int(match.group(1))}"
    if not _LOGIN.fullmatch(raw):
        raise ValueError(
            f"'{raw}' is not a sub-client login (Latin letters, digits, . _ - @), "
            "or give the ID as id:<n>"
        )
    return raw


# Sent as `user=<login>` or `user_id=<n>`, never both.
SubClient = Annotated[str, BeforeValidator(sub_client), Label("login|id:<n>")]


def user_params(user: str) -> dict[str, str]:
    if user.startswith("id:"):
        return {"user_id": user.removeprefix("id:")}
    return {"user": user}


def user_label(user: str) -> str:
    if user.startswith("id:"):
        return f"sub-client ID {user.removeprefix('id:')}"
    return f"sub-client {user}"


class ErrorBody(BaseModel):
    """`{"error": "description", "error_code": N}`: an error whatever the HTTP status."""

    model_config = ConfigDict(extra="ignore")

    error: str = ""
    error_code: int


class CreatedBody(BaseModel):
    """The JSON part of the create reply: the new invoice's ID and amount."""

    model_config = ConfigDict(extra="ignore")

    id: int
    sum: Decimal

    @field_validator("sum", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float):  # the client parses JSON numbers as Decimal; never floats
            raise ValueError("amounts must not be floats")
        return value


@dataclass(frozen=True, kw_only=True)
class CreatedInvoice:
    """A new invoice. The invoice exists even when its PDF part was unusable (`pdf_problem`)."""

    id: int
    sum: Decimal
    pdf: bytes | None
    pdf_problem: str | None = None
