"""SMSC documents API client: create a sub-client invoice, download invoice and act PDFs.

Quirks:
- Every call is `GET /sys/documents.php` with `login` and `psw` in the query string; the
  password is registered as a secret, so log lines and messages carry `••••••` instead.
- Errors come as `{"error": "…", "error_code": N}`, with HTTP 200 as often as not.
- SMSC accepts one document request a minute per login (error 9 otherwise), so every request
  waits its turn in the client's `DocumentQueue` and none is retried automatically: a retry
  would be a second request within the minute.
- A created invoice comes back as a multipart body: a JSON part (id, sum) and a PDF part.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from email import policy
from email.errors import CloseBoundaryNotFoundDefect, MessageDefect
from email.message import EmailMessage
from email.parser import BytesParser

import httpx
from pydantic import ValidationError

from commands.base import Notify
from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderError,
    ProviderHTTP,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    new_client,
    status_sentence,
)
from commands.money import fixed
from commands.secrets import register_secret
from commands.smsc.models import CreatedBody, CreatedInvoice, ErrorBody, user_label, user_params
from commands.smsc.pdf import pdf_problem
from commands.smsc.queue import SPACING, Clock, DocumentQueue, Sleep

PROVIDER = "SMSC"
DEFAULT_BASE_URL = "https://smsc.ru"

DOCUMENTS = "/sys/documents.php"
CREATE_INVOICE = "add_account"
GET_INVOICE = "get_account"
GET_ACT = "get_act"

# Error codes of documents.php (code 5 is listed without a description).
BAD_PARAMETERS = 1
BAD_CREDENTIALS = 2
IP_BLOCKED = 4
NO_SUB_CLIENT = 6
NO_DOCUMENT = 7
TOO_FREQUENT = 9

PDF_TYPES = frozenset({"application/pdf", "application/x-pdf", "application/octet-stream"})

# What `verify_credentials` asks for: a sub-client and invoice that cannot exist.
PROBE_USER = "id:999999999"
PROBE_ID = 999999999


class DocumentNotFound(ProviderRejected):
    """Error 6 (no such sub-client) or 7 (no such document): the credentials were accepted."""

    def __init__(self, message: str, *, code: int, status: int) -> None:
        super().__init__(PROVIDER, message, status=status)
        self.code = code


def document_params(action: str, user: str, **extra: str | None) -> dict[str, str]:
    """The query of one documents.php request, after `login` and `psw`."""
    params = {action: "1", **user_params(user)}
    params.update({key: value for key, value in extra.items() if value is not None})
    return params


def money(amount: Decimal) -> str:
    """A sum as SMSC's form takes it, in cents; more decimals are refused, never rounded."""
    return fixed(amount, 2)


class SmscClient:
    def __init__(self, http: ProviderHTTP, queue: DocumentQueue) -> None:
        self.http = http
        self.queue = queue

    @classmethod
    def open(
        cls,
        *,
        base_url: str,
        login: str,
        password: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        spacing: float = SPACING,
    ) -> SmscClient:
        register_secret(password)
        client = new_client(
            base_url=base_url.rstrip("/"),
            params={"login": login, "psw": password},
            transport=transport,
        )
        queue = DocumentQueue(
            account=login,
            spacing=spacing,
            clock=clock or time.monotonic,
            sleep=sleep or asyncio.sleep,
        )
        # One attempt only: the queue spaces requests, and a retry would trip error 9.
        http = ProviderHTTP(PROVIDER, client, retry=RetryPolicy(attempts=1))
        return cls(http, queue)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create_invoice(
        self,
        user: str,
        amount: Decimal,
        *,
        service: str | None = None,
        notify: Notify | None = None,
    ) -> CreatedInvoice:
        params = document_params(CREATE_INVOICE, user, sum=money(amount), service=service)
        response = await self._send(params, idempotent=False, notify=notify)
        # SMSC's document describes its refusals only as `{"error", "error_code"}` bodies; a 5xx
        # without one says nothing about whether the invoice was made first, so it is "outcome
        # unknown". Any other answer that is not the documented multipart is unknown too (see
        # `created_invoice`): only an error body or a 4xx is a refusal.
        if response.status_code >= 500 and _error_body(response) is None:
            raise OutcomeUnknown(
                PROVIDER,
                f"SMSC had an internal error (HTTP {response.status_code}) after receiving the "
                "invoice request, so the invoice may or may not exist",
                status=response.status_code,
            )
        self._raise_for_error(response, user=user, document=None)
        return created_invoice(response)

    async def invoice_pdf(
        self, user: str, invoice_id: int, *, notify: Notify | None = None
    ) -> bytes:
        params = document_params(GET_INVOICE, user, id=str(invoice_id))
        response = await self._send(params, idempotent=True, notify=notify)
        self._raise_for_error(response, user=user, document=f"invoice {invoice_id}")
        return pdf_body(response, what=f"invoice {invoice_id}")

    async def act_pdf(
        self,
        user: str,
        *,
        act_id: int | None = None,
        num: int | None = None,
        notify: Notify | None = None,
    ) -> bytes:
        if (act_id is None) == (num is None):
            raise ValueError("give exactly one of act_id and num")
        what = f"act {act_id}" if act_id is not None else f"act number {num}"
        params = document_params(
            GET_ACT,
            user,
            id=None if act_id is None else str(act_id),
            num=None if num is None else str(num),
        )
        response = await self._send(params, idempotent=True, notify=notify)
        self._raise_for_error(response, user=user, document=what)
        return pdf_body(response, what=what)

    async def verify_credentials(self, *, notify: Notify | None = None) -> str:
        """Ask for an invoice that cannot exist: error 6 or 7 means the login was accepted."""
        try:
            await self.invoice_pdf(PROBE_USER, PROBE_ID, notify=notify)
        except DocumentNotFound:
            return (
                f"login {self.queue.account} accepted (a probe for a missing invoice was refused)"
            )
        return f"login {self.queue.account} accepted"

    async def _send(
        self, params: dict[str, str], *, idempotent: bool, notify: Notify | None
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            return await self.http.send("GET", DOCUMENTS, params=params, idempotent=idempotent)

        return await self.queue.run(call, notify=notify)

    def _raise_for_error(
        self, response: httpx.Response, *, user: str, document: str | None
    ) -> None:
        status = response.status_code
        body = _error_body(response)
        if body is not None:
            raise error_for(body, status=status, user=user, document=document)
        if status == 429 or status >= 500:
            raise ProviderUnavailable(PROVIDER, status_sentence(status), status=status)
        if status >= 400:
            raise ProviderRejected(PROVIDER, status_sentence(status), status=status)


def error_for(body: ErrorBody, *, status: int, user: str, document: str | None) -> ProviderError:
    said = f' (SMSC: "{body.error}")' if body.error else ""
    code = body.error_code
    if code == BAD_CREDENTIALS:
        return ProviderAuthError(
            PROVIDER,
            "wrong login/password, or this server's IP is not allowed; check SMSC_LOGIN, "
            f"SMSC_PASSWORD and the account's list of allowed IP addresses{said}",
            status=status,
        )
    if code == BAD_PARAMETERS:
        return ProviderRejected(
            PROVIDER,
            "SMSC rejected the request's parameters; check the sub-client, the sum and the "
            f"document number{said}",
            status=status,
        )
    if code == IP_BLOCKED:
        return ProviderRejected(
            PROVIDER,
            "SMSC has blocked this server's IP address for a while (usually after repeated "
            f"errors); wait before trying again{said}",
            status=status,
        )
    if code == NO_SUB_CLIENT:
        return DocumentNotFound(
            f"SMSC has no {user_label(user)}; check the login or ID in the SMSC account{said}",
            code=code,
            status=status,
        )
    if code == NO_DOCUMENT:
        return DocumentNotFound(
            f"SMSC has no {document or 'such document'} for {user_label(user)}{said}",
            code=code,
            status=status,
        )
    if code == TOO_FREQUENT:
        return ProviderUnavailable(
            PROVIDER,
            "SMSC takes one document request a minute per account and refused this one: "
            "something else is using the same login (another program or another copy of the "
            f"bot); try again in a minute{said}",
            status=status,
        )
    return ProviderRejected(PROVIDER, f"SMSC answered with error {code}{said}", status=status)


def _error_body(response: httpx.Response) -> ErrorBody | None:
    content = response.content.strip()
    if not content.startswith(b"{"):
        return None
    try:
        return ErrorBody.model_validate_json(content)
    except ValidationError:
        return None


def pdf_body(response: httpx.Response, *, what: str) -> bytes:
    """The body of a download, which must be a complete PDF file."""
    problem = pdf_problem(response.content)
    if problem is not None:
        kind = response.headers.get("content-type", "no content type")
        raise ProviderRejected(
            PROVIDER,
            f"SMSC's answer for {what} is not a usable PDF: {problem} ({kind}); try again later",
            status=response.status_code,
        )
    return response.content


def created_invoice(response: httpx.Response) -> CreatedInvoice:
    """Read the multipart create reply: the JSON part (id, sum) and the PDF part."""
    content_type = response.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/"):
        raise OutcomeUnknown(
            PROVIDER,
            f"SMSC answered the invoice request with {content_type or 'no content type'} "
            "instead of the invoice, so it may or may not exist",
            status=response.status_code,
        )
    parts, defects = multipart_parts(content_type, response.content)
    created: CreatedBody | None = None
    pdf: bytes | None = None
    for part_type, payload in parts:
        if created is None and (found := _created_body(payload)) is not None:
            created = found
        elif pdf is None and (part_type in PDF_TYPES or payload.lstrip().startswith(b"%PDF")):
            pdf = payload
    if created is None:
        raise OutcomeUnknown(
            PROVIDER,
            "SMSC's answer to the invoice request has no readable invoice ID and sum, "
            "so the invoice may or may not exist",
            status=response.status_code,
        )
    if pdf is None:
        return CreatedInvoice(
            id=created.id, sum=created.sum, pdf=None, pdf_problem="the reply has no PDF part"
        )
    problem = pdf_problem(pdf)
    if problem is None and any(isinstance(d, CloseBoundaryNotFoundDefect) for d in defects):
        problem = "the reply was cut off before its end"
    return CreatedInvoice(
        id=created.id,
        sum=created.sum,
        pdf=pdf if problem is None else None,
        pdf_problem=problem,
    )


def multipart_parts(
    content_type: str, body: bytes
) -> tuple[list[tuple[str, bytes]], list[MessageDefect]]:
    """Split a multipart body with the stdlib MIME parser: (content type, decoded bytes) parts."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode(errors="replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    assert isinstance(message, EmailMessage)
    parts: list[tuple[str, bytes]] = []
    defects: list[MessageDefect] = list(message.defects)
    if message.is_multipart():
        for part in message.iter_parts():
            defects += part.defects
            payload = part.get_payload(decode=True)
            parts.append((part.get_content_type(), payload if isinstance(payload, bytes) else b""))
    return parts, defects


def _created_body(payload: bytes) -> CreatedBody | None:
    try:
        data = json.loads(payload, parse_float=Decimal)
        return CreatedBody.model_validate(data)
    except (ValueError, ValidationError):
        return None
