"""A faithful fake of SMSC's documents.php, as the provider's documents describe it.

`GET` or `POST /sys/documents.php` with `login` and `psw`, one of `add_account=1`,
`get_account=1`, `get_act=1`, and `user` or `user_id` (never both). Errors are
`{"error": "…", "error_code": N}` with HTTP 200: 1 bad parameters, 2 bad credentials, 4 IP
blocked (`ip_blocked`), 6 unknown sub-client, 7 unknown document (or another sub-client's),
9 a second document request from the same login within a minute of the last accepted one, by
the injectable `clock`. A created invoice comes back as multipart/mixed: a JSON part with its
`id` and `sum`, then the PDF; downloads return the PDF itself. Every PDF is a real one-page
document with the number and sum on it. With `control.echo_secrets`, every request gets error 1
quoting the login and password it carried.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from commands.money import exact
from commands.sandbox import ControlMiddleware, SandboxControl
from commands.smsc import client as api
from commands.smsc.pdf import render_pdf
from commands.smsc.queue import MINUTE

SANDBOX_LOGIN = "sandbox"
SANDBOX_PASSWORD = "sandbox-smsc-password"
SANDBOX_BASE_URL = "http://smsc.sandbox"

ACTIONS = (api.CREATE_INVOICE, api.GET_INVOICE, api.GET_ACT)
ERRORS = {
    api.BAD_PARAMETERS: "parameters error",
    api.BAD_CREDENTIALS: "authorise error",
    api.IP_BLOCKED: "IP is blocked",
    api.NO_SUB_CLIENT: "sublogin not found",
    api.NO_DOCUMENT: "document not found",
    api.TOO_FREQUENT: "duplicate request, wait a minute",
}
_SUM = re.compile(r"\d{1,12}(\.\d{1,2})?")
_NUMBER = re.compile(r"\d{1,20}")


@dataclass
class Document:
    id: int
    client_id: int
    sum: Decimal
    service: str | None = None
    num: int | None = None  # acts have a number as well as an ID


@dataclass(frozen=True)
class Served:
    """A document request that passed the credential and parameter checks."""

    at: float
    action: str
    error_code: int | None


@dataclass
class SmscSandbox:
    persisted: ClassVar[tuple[str, ...]] = ("sub_clients", "invoices", "acts", "next_invoice_id")

    login: str = SANDBOX_LOGIN
    password: str = SANDBOX_PASSWORD
    clock: Callable[[], float] = time.monotonic
    control: SandboxControl = field(default_factory=SandboxControl)
    sub_clients: dict[int, str] = field(default_factory=dict)
    invoices: dict[int, Document] = field(default_factory=dict)
    acts: dict[int, Document] = field(default_factory=dict)
    ip_blocked: bool = False
    next_invoice_id: int = 600
    served: list[Served] = field(default_factory=list)
    last_accepted: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sub_clients:
            self.sub_clients = {101: "acme", 102: "globex"}
            self.invoices = {
                501: Document(501, 101, Decimal("1500.00"), "SMS package"),
                502: Document(502, 101, Decimal("320.50"), "Sender names"),
                503: Document(503, 102, Decimal("99.90"), "SMS package"),
            }
            self.acts = {
                701: Document(701, 101, Decimal("1820.50"), "Services for October", num=7),
                702: Document(702, 102, Decimal("99.90"), "Services for October", num=8),
            }

    def samples(self, limit: int = 6) -> list[tuple[str, str]]:
        def owner(doc: Document) -> str:
            return self.sub_clients.get(doc.client_id, str(doc.client_id))

        def listed(items: list[str]) -> str:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            return (", ".join(items[:limit]) or "none") + more

        clients = [f"{name} (ID {i})" for i, name in self.sub_clients.items()]
        invoices = [f"{d.id} ({owner(d)})" for d in self.invoices.values()]
        acts = [f"{d.id} or num={d.num} ({owner(d)})" for d in self.acts.values()]
        return [
            ("sub-clients", listed(clients)),
            ("invoices", listed(invoices)),
            ("acts", listed(acts)),
        ]

    def app(self) -> ASGIApp:
        routes = [Route(api.DOCUMENTS, self.documents, methods=["GET", "POST"])]
        return ControlMiddleware(Starlette(routes=routes), self.control, echo=self.echo_secrets)

    async def echo_secrets(self, request: Request) -> Response:
        """Error 1 with the password bare in its text, in no `psw=` shape a pattern would mask."""
        params = await _params(request)
        said = f"{ERRORS[api.BAD_PARAMETERS]}: login {params.get('login')} used {params.get('psw')}"
        return JSONResponse({"error": said, "error_code": api.BAD_PARAMETERS})

    async def documents(self, request: Request) -> Response:
        params = await _params(request)
        if self.ip_blocked:
            return error(api.IP_BLOCKED)
        if params.get("login") != self.login or params.get("psw") != self.password:
            return error(api.BAD_CREDENTIALS)
        actions = [a for a in ACTIONS if params.get(a) == "1"]
        if len(actions) != 1 or not _valid(actions[0], params):
            return error(api.BAD_PARAMETERS)
        action = actions[0]
        now = self.clock()
        last = self.last_accepted.get(self.login)
        if last is not None and now - last < MINUTE:
            self.served.append(Served(now, action, api.TOO_FREQUENT))
            return error(api.TOO_FREQUENT)
        self.last_accepted[self.login] = now
        response, code = self._answer(action, params)
        self.served.append(Served(now, action, code))
        return response

    def _answer(self, action: str, params: dict[str, str]) -> tuple[Response, int | None]:
        client_id = self._client_id(params)
        if client_id is None:
            return error(api.NO_SUB_CLIENT), api.NO_SUB_CLIENT
        if action == api.CREATE_INVOICE:
            return self._create(client_id, params), None
        if action == api.GET_INVOICE:
            found = self.invoices.get(int(params["id"]))
        elif "id" in params:
            found = self.acts.get(int(params["id"]))
        else:
            num = int(params["num"])
            found = next((a for a in self.acts.values() if a.num == num), None)
        if found is None or found.client_id != client_id:
            return error(api.NO_DOCUMENT), api.NO_DOCUMENT
        kind = "invoice" if action == api.GET_INVOICE else "act"
        pdf = self.pdf(kind, found)
        disposition = f'attachment; filename="{kind}_{found.id}.pdf"'
        return Response(
            pdf, media_type="application/pdf", headers={"Content-Disposition": disposition}
        ), None

    def _client_id(self, params: dict[str, str]) -> int | None:
        if "user_id" in params:
            wanted = int(params["user_id"])
            return wanted if wanted in self.sub_clients else None
        return next((i for i, name in self.sub_clients.items() if name == params["user"]), None)

    def _create(self, client_id: int, params: dict[str, str]) -> Response:
        self.next_invoice_id += 1
        invoice = Document(
            self.next_invoice_id, client_id, Decimal(params["sum"]), params.get("service")
        )
        self.invoices[invoice.id] = invoice
        pdf = self.pdf("invoice", invoice)
        boundary = f"smsc-{secrets.token_hex(12)}"
        # JSON written by hand so the sum stays a decimal number, as SMSC sends it.
        summary = f'{{"id": {invoice.id}, "sum": {invoice.sum}}}'.encode()
        body = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(),
                summary,
                f"\r\n--{boundary}\r\nContent-Type: application/pdf\r\n".encode(),
                f'Content-Disposition: attachment; filename="invoice_{invoice.id}.pdf"'.encode(),
                b"\r\n\r\n",
                pdf,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        return Response(body, media_type=f'multipart/mixed; boundary="{boundary}"')

    def pdf(self, kind: str, document: Document) -> bytes:
        name = self.sub_clients[document.client_id]
        number = f"No. {document.num} (ID {document.id})" if document.num else f"No. {document.id}"
        lines = [
            f"Sub-client: {name} (ID {document.client_id})",
            f"Sum: {exact(document.sum, decimals=2)}",
            f"Service: {document.service or '-'}",
            "SMSC sandbox document: not a real invoice.",
        ]
        return render_pdf(lines, title=f"SMSC {kind} {number}")


async def _params(request: Request) -> dict[str, str]:
    """Query and (for POST) form fields, as documents.php reads them."""
    params = dict(request.query_params)
    if request.method == "POST":
        form = await request.form()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def error(code: int) -> Response:
    # SMSC reports errors in the body with HTTP 200.
    return JSONResponse({"error": ERRORS[code], "error_code": code})


def _valid(action: str, params: dict[str, str]) -> bool:
    user, user_id = params.get("user"), params.get("user_id")
    if (user is None) == (user_id is None) or (user is not None and not user):
        return False
    if user_id is not None and not _NUMBER.fullmatch(user_id):
        return False
    if action == api.CREATE_INVOICE:
        amount = params.get("sum", "")
        return bool(_SUM.fullmatch(amount)) and Decimal(amount) > 0
    if action == api.GET_INVOICE:
        return _NUMBER.fullmatch(params.get("id", "")) is not None
    has_id, has_num = "id" in params, "num" in params
    if has_id == has_num:
        return False
    return _NUMBER.fullmatch(params["id" if has_id else "num"]) is not None
