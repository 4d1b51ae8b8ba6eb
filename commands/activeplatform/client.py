"""ActivePlatform reseller API client (API v3, JSON:API): accounts and closing-document notices.

Quirks: every request carries the manager's token in `X-Api-Token` and the JSON:API media type
in both `Content-Type` and `Accept`, GETs included. The notification answers 200 with the body
`null`, and its 422 carries `errors` as one object (`{"title": …, "status": "422"}`), not a list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import httpx
from pydantic import ValidationError

from commands.activeplatform.models import Account, AccountPage, ChunkOutcome, ClosingRun, ErrorBody
from commands.base import Progress
from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderError,
    ProviderHTTP,
    ProviderRejected,
    ProviderUnavailable,
    new_client,
    status_sentence,
    unreadable_write,
)
from commands.secrets import register_secret
from commands.words import plural

PROVIDER = "ActivePlatform"

MEDIA_TYPE = "application/vnd.api+json"
ACCOUNTS = "/api/v3/resellers/{reseller}/accounts"
NOTIFY_CLOSING = "/api/v3/resellers/{reseller}/notifications/external_invoices"

# The documented default (no maximum is given): ActivePlatform API guide, "Get list of
# accounts", page[size].
DEFAULT_PAGE_SIZE = 50
DEFAULT_CHUNK_SIZE = 50

# Answers that concern the whole reseller, not one chunk of accounts: stop sending on them.
RESELLER_LEVEL = frozenset({401, 403, 404})


class ActivePlatformClient:
    """Typed calls plus the per-installation choices: default reseller, page and chunk sizes."""

    def __init__(
        self,
        http: ProviderHTTP,
        *,
        default_reseller: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.http = http
        self.default_reseller = default_reseller
        self.page_size = page_size
        self.chunk_size = chunk_size

    @classmethod
    def open(
        cls,
        *,
        base_url: str,
        api_token: str,
        default_reseller: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> ActivePlatformClient:
        register_secret(api_token)
        client = new_client(
            base_url=base_url,
            headers={"X-Api-Token": api_token, "Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE},
            transport=transport,
        )
        return cls(
            ProviderHTTP(PROVIDER, client),
            default_reseller=default_reseller,
            page_size=page_size,
            chunk_size=chunk_size,
        )

    # --- accounts ----------------------------------------------------------------------------

    async def accounts_page(
        self, reseller: str, *, number: int, size: int, email: str | None = None
    ) -> AccountPage:
        params = {"page[number]": str(number), "page[size]": str(size)}
        if email:
            params["filter[email]"] = email
        response = await self.http.send(
            "GET", ACCOUNTS.format(reseller=reseller), params=params, idempotent=True
        )
        try:
            return AccountPage.model_validate(self._ok(response, reseller))
        except ValidationError:
            raise ProviderUnavailable(
                PROVIDER, "the account list came back in an unexpected shape"
            ) from None

    async def accounts(self, reseller: str, email: str | None = None) -> list[Account]:
        """Every account of the reseller, all pages, in the provider's order.

        Pages are read until one is empty or its `links.next` is null: a page shorter than
        asked does not end the list, so `accounts=all` never skips accounts.
        """
        found: dict[str, Account] = {}
        number = 1
        while True:
            page = await self.accounts_page(
                reseller, number=number, size=self.page_size, email=email
            )
            fresh = [a for a in page.data if a.id not in found]
            found.update((a.id, a) for a in fresh)
            # A server that ignores page[number] would repeat its first page for ever.
            if page.is_last() or not fresh:
                return list(found.values())
            number += 1

    # --- closing-document notifications ------------------------------------------------------

    async def notify_closing(
        self, reseller: str, account_ids: Sequence[str], start: date, end: date
    ) -> None:
        body = {
            "account_ids": [int(i) for i in account_ids],
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        response = await self.http.send(
            "POST",
            NOTIFY_CLOSING.format(reseller=reseller),
            content=json.dumps(body).encode(),
            idempotent=False,
        )
        count = plural(len(account_ids), "account")
        self._ok(response, reseller, write=f"the notification of {count}")

    async def notify_closing_in_chunks(
        self,
        reseller: str,
        account_ids: Sequence[str],
        start: date,
        end: date,
        *,
        progress: Progress,
    ) -> ClosingRun:
        """Send `chunk_size` accounts per request and report each chunk's fate.

        A chunk the provider refuses (422, 5xx, unreachable) is recorded and the next one is
        sent. A reseller-level refusal (401, 403, 404) stops the run. If nothing was delivered
        the error is raised as it came; a lost answer raises `OutcomeUnknown` at once, naming
        what was delivered, what may have been and what was not sent.
        """
        chunks = [
            tuple(account_ids[i : i + self.chunk_size])
            for i in range(0, len(account_ids), self.chunk_size)
        ]
        outcomes: list[ChunkOutcome] = []
        first_error: ProviderError | None = None
        done = 0
        for number, chunk in enumerate(chunks, start=1):
            error: ProviderError | None = None
            try:
                await self.notify_closing(reseller, chunk, start, end)
            except OutcomeUnknown as exc:
                raise OutcomeUnknown(
                    PROVIDER, _lost_answer(outcomes, number, chunks, exc.message)
                ) from None
            except (ProviderRejected, ProviderUnavailable) as exc:
                error = exc
            first_error = first_error or error
            outcomes.append(ChunkOutcome(number, chunk, error.message if error else None))
            done += len(chunk)
            state = "failed" if error else "sent"
            await progress(done, len(account_ids), f"chunk {number} of {len(chunks)} {state}")
            if error is not None and error.status in RESELLER_LEVEL:
                outcomes += [
                    ChunkOutcome(n, rest, f"not sent after chunk {number}: {error.message}")
                    for n, rest in enumerate(chunks[number:], start=number + 1)
                ]
                break
        run = ClosingRun(tuple(outcomes))
        if first_error is not None and not run.delivered_ids:
            if len(chunks) == 1:
                raise first_error
            raise type(first_error)(
                PROVIDER,
                f"no notifications were sent; chunk 1 of {len(chunks)}: {first_error.message}",
                status=first_error.status,
            )
        return run

    # --- answers -----------------------------------------------------------------------------

    def _ok(self, response: httpx.Response, reseller: str, *, write: str | None = None) -> Any:
        """The answer's JSON (None when empty). `write` names the write the answer is to: then
        only a clear refusal (a 4xx, or 429) is an error, and anything else that is not
        readable is "outcome unknown" (`unreadable_write`)."""
        status = response.status_code
        if status == 401:
            raise ProviderAuthError(
                PROVIDER,
                "the API token was refused; check ACTIVEPLATFORM_API_TOKEN",
                status=status,
            )
        if status == 403:
            raise ProviderRejected(
                PROVIDER,
                f"this token's manager may not act for reseller {reseller}; use the manager's own "
                "reseller or one of its downstream resellers",
                status=status,
            )
        if status == 404:
            raise ProviderRejected(PROVIDER, f"no reseller {reseller}", status=status)
        if status == 422:
            raise ProviderRejected(PROVIDER, error_text(response), status=status)
        if status >= 500 and write is not None:
            # The method's document promises "notifications will not be sent" only for its 422;
            # it says nothing of server errors, so after a 5xx the accounts may or may not have
            # been notified: "outcome unknown", and the run stops there (see _lost_answer).
            raise unreadable_write(PROVIDER, response, write)
        if status == 429 or status >= 500:
            raise ProviderUnavailable(PROVIDER, status_sentence(status), status=status)
        if status >= 400:
            raise ProviderRejected(PROVIDER, status_sentence(status), status=status)
        if write is not None and status >= 300:
            raise unreadable_write(PROVIDER, response, write)  # redirects are not followed
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            if write is not None:
                raise unreadable_write(PROVIDER, response, write) from None
            raise ProviderUnavailable(
                PROVIDER, "it answered with something that is not JSON", status=status
            ) from None


def error_text(response: httpx.Response) -> str:
    """The title(s) of a JSON:API error answer, or a plain sentence when there are none."""
    try:
        text = ErrorBody.model_validate_json(response.content).text()
    except ValueError:
        text = ""
    return text or "some parameters were incorrect"


def _lost_answer(
    outcomes: Sequence[ChunkOutcome],
    number: int,
    chunks: Sequence[tuple[str, ...]],
    reason: str,
) -> str:
    delivered = sum(len(o.account_ids) for o in outcomes if o.delivered)
    failed = sum(len(o.account_ids) for o in outcomes if not o.delivered)
    unknown = ChunkOutcome(number, chunks[number - 1])
    not_sent = sum(len(c) for c in chunks[number:])
    earlier = f"{delivered} accounts in earlier chunks were notified"
    if failed:
        earlier += f" and {failed} failed"
    return (
        f"chunk {number} of {len(chunks)} (accounts {unknown.span}) {reason}; "
        f"{earlier}; {not_sent} accounts after it were not sent"
    )
