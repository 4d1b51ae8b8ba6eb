"""InvoiceXpress payloads. `default_sequence` comes as 1/0 (number or string)."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

NOT_REGISTERED = "N/D"  # the ATCUD validation code before the sequence is registered
NOT_RELEVANT = "N/A"


class Sequence(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int
    serie: str
    default_sequence: bool = False
    current_invoice_number: int = 0
    validation_code: str = Field(
        default=NOT_REGISTERED,
        validation_alias=AliasChoices(
            "invoice_validation_code", "invoice_sequence_validation_code", "validation_code"
        ),
    )

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
        return self.validation_code not in {NOT_REGISTERED, ""}


class SequenceList(BaseModel):
    sequences: list[Sequence]


class SequenceEnvelope(BaseModel):
    sequence: Sequence
