"""InvoiceXpress payloads.

Field names follow InvoiceXpress's API reference (version 2.0.0, "Sequences": List Sequences and
Register Sequence, https://docs.invoicexpress.com/sequences/registersequence): ids are integers,
`default_sequence` is 1/0, and each document type of a sequence has its own counter and ATCUD
validation code, `current_<document type>_number` and `current_<document type>_validation_code`
(`current_invoice_validation_code`: `ABCD1234` once registered with the tax authority, `N/D`
when relevant for ATCUD but not registered, `N/A` when not relevant). `register.json` answers
`{"sequences": […]}`. A numeric field may also arrive as a string; both are read.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NOT_REGISTERED = "N/D"  # relevant for ATCUD, not registered with the tax authority yet
NOT_RELEVANT = "N/A"  # not relevant for ATCUD: nothing to register

# The document types a sequence numbers, as the reference lists them.
DOCUMENT_TYPES = (
    "invoice",
    "invoice_receipt",
    "simplified_invoice",
    "credit_note",
    "debit_note",
    "receipt",
    "shipping",
    "transport",
    "devolution",
    "proforma",
    "quote",
    "fees_note",
)

_NUMBER_FIELD = re.compile(r"^current_(?P<kind>[a-z_]+?)_number$")


class Sequence(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: int
    serie: str
    default_sequence: bool = False
    current_invoice_number: int = 0
    # The invoice type's code stands for the sequence, as the web app shows it; `None` when the
    # account sends none (an account outside Portugal has no ATCUD).
    validation_code: str | None = Field(
        default=None, validation_alias="current_invoice_validation_code"
    )
    # Every `current_<type>_number` sent, by type: a sequence with documents cannot be
    # registered any more.
    document_numbers: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "document_numbers" in data:
            return data
        numbers = {}
        for key, value in data.items():
            found = _NUMBER_FIELD.match(str(key))
            if found and re.fullmatch(r"\d+", str(value).strip()):
                numbers[found["kind"]] = int(str(value).strip())
        return {**data, "document_numbers": numbers}

    @field_validator("default_sequence", mode="before")
    @classmethod
    def _one_or_zero(cls, value: Any) -> bool:
        return str(value).strip().lower() in {"1", "true"}

    @field_validator("current_invoice_number", mode="before")
    @classmethod
    def _number(cls, value: Any) -> int:
        return int(value or 0)

    @property
    def registered(self) -> bool:
        return self.validation_code not in {None, "", NOT_REGISTERED, NOT_RELEVANT}

    @property
    def used(self) -> bool:
        """Documents were issued in it (any type's counter is past zero)."""
        return any(number > 0 for number in self.document_numbers.values())

    @property
    def code_shown(self) -> str:
        return self.validation_code or "–"

    def why_not_registrable(self) -> str | None:
        """Why `register.json` would refuse this sequence, or None when it may be registered.

        The API registers only a sequence that is relevant for ATCUD, not registered yet, not
        the default and without documents; anything else it refuses, so nobody is offered it.
        """
        if self.validation_code is None:
            return "InvoiceXpress sends no ATCUD code for it (no tax-authority registration here)"
        if self.validation_code == NOT_RELEVANT:
            return "it is not relevant for ATCUD"
        if self.registered:
            return f"it is already registered (ATCUD code {self.validation_code})"
        if self.default_sequence:
            return "it is the default sequence, which the API does not register"
        if self.used:
            return "documents were already issued in it, so the API no longer registers it"
        return None


class SequenceList(BaseModel):
    sequences: list[Sequence]


class SequenceEnvelope(BaseModel):
    sequence: Sequence
