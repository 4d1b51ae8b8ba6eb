"""ActivePlatform payloads (JSON:API) and the outcome of a chunked notification run.

Account ids arrive as strings in `data[].id` (older installations sent numbers); the
notification body wants them as numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AccountAttributes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    primary_name: str | None = None
    email: str | None = None
    status: str | None = None


class Account(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    attributes: AccountAttributes = Field(default_factory=AccountAttributes)

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> str:
        return str(value)

    @property
    def name(self) -> str:
        return self.attributes.name or self.attributes.primary_name or ""

    @property
    def email(self) -> str:
        return self.attributes.email or ""

    @property
    def status(self) -> str:
        return self.attributes.status or ""


class PageLinks(BaseModel):
    model_config = ConfigDict(extra="ignore")

    next: str | None = None


class PageMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")

    total_count: int | None = None
    total_pages: int | None = None


class AccountPage(BaseModel):
    """One page of `GET …/accounts`.

    The reference documents `page[number]`/`page[size]` (default size 50, no maximum given) and
    a `data` array, and no `links` or `meta` (ActivePlatform API guide, "Get list of accounts",
    https://docs.activeplatform.com/api-guide/latest/en/resellery/klienty-resellerov/poluchenie-spiska-klientov-resellera):
    both are optional here, and a server may send fewer accounts than asked on any page.
    """

    model_config = ConfigDict(extra="ignore")

    data: list[Account]
    links: PageLinks | None = None
    meta: PageMeta | None = None

    def is_last(self) -> bool:
        """Whether no page follows: this one is empty, or its links say `next` is null.

        A short page proves nothing (a server may cap the page size below what was asked), and
        neither do counts in `meta`, so nothing else ends the listing.
        """
        if not self.data:
            return True
        links = self.links
        return links is not None and "next" in links.model_fields_set and not links.next


class ErrorObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str | None = None
    detail: str | None = None


class ErrorBody(BaseModel):
    """ActivePlatform sends `errors` as one object; JSON:API proper sends a list of them."""

    model_config = ConfigDict(extra="ignore")

    errors: ErrorObject | list[ErrorObject]

    def text(self) -> str:
        items = self.errors if isinstance(self.errors, list) else [self.errors]
        texts = [e.title or e.detail or "" for e in items]
        return "; ".join(t for t in texts if t)


@dataclass(frozen=True)
class ChunkOutcome:
    """One request of a chunked notification run. `error` is None when it was delivered."""

    number: int
    account_ids: tuple[str, ...]
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None

    @property
    def span(self) -> str:
        first, last = self.account_ids[0], self.account_ids[-1]
        return first if first == last else f"{first}…{last}"


@dataclass(frozen=True)
class ClosingRun:
    outcomes: tuple[ChunkOutcome, ...]

    @property
    def failed(self) -> tuple[ChunkOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.delivered)

    @property
    def delivered_ids(self) -> tuple[str, ...]:
        return tuple(i for o in self.outcomes if o.delivered for i in o.account_ids)

    @property
    def failed_ids(self) -> tuple[str, ...]:
        return tuple(i for o in self.failed for i in o.account_ids)

    @property
    def total(self) -> int:
        return sum(len(o.account_ids) for o in self.outcomes)
