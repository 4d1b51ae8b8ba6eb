"""A faithful fake of the InvoiceXpress endpoints the bot uses.

Behaves as the documents say: every call needs `api_key`; an unknown id is 404 with an empty
body; a duplicate serie is 422 with `{"errors":[{"error":"…"}]}`; `default_sequence` is sent as
"1"/"0"; `set_current` moves the default; creating a sequence also registers it with the tax
authority (an ATCUD validation code appears), and `register` does it for an old one.

A sequence reads as the API reference writes it (InvoiceXpress API 2.0.0, List Sequences and
Register Sequence, https://docs.invoicexpress.com/sequences/registersequence): integer `id`,
`default_sequence` 1/0, and per document type `current_<type>_number`, `current_<type>_sequence_id`
and `current_<type>_validation_code` (`N/D` until registered). `register` answers
`{"sequences": [the sequence]}`; it refuses a default sequence or one with documents with 406
and an already registered one with 422, each with a message in `{"errors":[{"error":"…"}]}`
(the messages' wording is the sandbox's own).
With `control.echo_secrets`, every request gets a 422 quoting the API key it carried, and the AT
password (as typed and as sent, in Base64) when it carried one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from commands.invoicexpress import client as api
from commands.invoicexpress.models import DOCUMENT_TYPES, NOT_REGISTERED, NOT_RELEVANT
from commands.sandbox import ControlMiddleware, SandboxControl

SANDBOX_API_KEY = "sandbox-invoicexpress-key"
SANDBOX_BASE_URL = "http://invoicexpress.sandbox"
SUBUSER = re.compile(r"^\d{9}/\d+$")


@dataclass
class StoredSequence:
    id: int
    serie: str
    default: bool
    current_invoice_number: int
    validation_code: str  # the invoice type's; every other type's code follows it

    @property
    def registered(self) -> bool:
        return self.validation_code not in {NOT_REGISTERED, NOT_RELEVANT}

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "serie": self.serie,
            "default_sequence": 1 if self.default else 0,
        }
        for index, kind in enumerate(DOCUMENT_TYPES):
            code = self.validation_code
            if self.registered and index:
                code = code[:-1] + str(index % 10)  # one code per document type
            body[f"current_{kind}_number"] = self.current_invoice_number if index == 0 else 0
            body[f"current_{kind}_sequence_id"] = self.id * 100 + index
            body[f"current_{kind}_validation_code"] = code
        return body


@dataclass
class InvoiceXpressSandbox:
    persisted: ClassVar[tuple[str, ...]] = ("sequences", "at_settings", "next_id")

    api_key: str = SANDBOX_API_KEY
    control: SandboxControl = field(default_factory=SandboxControl)
    sequences: dict[int, StoredSequence] = field(default_factory=dict)
    at_settings: dict[str, str] | None = None
    next_id: int = 100

    def __post_init__(self) -> None:
        if not self.sequences:
            self.add("2025", default=False, number=214, code="JFKG7A2B")
            self.add("2026", default=True, number=38, code="K9LX4T3P")
            self.add("NC2026", default=False, number=0, code="N/D")
            # From before ATCUD: documents were issued in it, so it can no longer be registered.
            self.add("2022", default=False, number=412, code="N/D")

    def add(self, serie: str, *, default: bool, number: int = 0, code: str = "N/D") -> int:
        self.next_id += 1
        if default:
            for existing in self.sequences.values():
                existing.default = False
        self.sequences[self.next_id] = StoredSequence(self.next_id, serie, default, number, code)
        return self.next_id

    def samples(self) -> list[tuple[str, str]]:
        shown = [
            f"{s.id} ({s.serie}{', default' if s.default else ''})" for s in self.sequences.values()
        ]
        return [("sequences", ", ".join(shown) or "none")]

    def app(self) -> Any:
        routes = [
            Route(api.SEQUENCES, self.list_or_create, methods=["GET", "POST"]),
            Route("/sequences/{id:int}.json", self.show, methods=["GET"]),
            Route("/sequences/{id:int}/set_current.json", self.set_current, methods=["PUT"]),
            Route("/sequences/{id:int}/register.json", self.register, methods=["PUT"]),
            Route(api.AT_COMMUNICATION, self.at_communication, methods=["POST"]),
        ]
        return ControlMiddleware(Starlette(routes=routes), self.control, echo=self.echo_secrets)

    async def echo_secrets(self, request: Request) -> Response:
        """A 422 with the secrets bare in its text, in no `api_key=` shape a pattern would mask."""
        said = [f"the key {request.query_params.get('api_key', '')} may not do this"]
        try:
            encoded = str((await request.json())["at_communication"]["at_password"])
            typed = base64.b64decode(encoded, validate=True).decode()
        except (ValueError, KeyError, TypeError, binascii.Error):
            pass
        else:
            said.append(f"the AT sub-user refused {typed} (sent as {encoded})")
        return JSONResponse({"errors": [{"error": e} for e in said]}, status_code=422)

    def _denied(self, request: Request) -> Response | None:
        if request.query_params.get("api_key") != self.api_key:
            return Response(status_code=401)
        return None

    def _find(self, request: Request) -> StoredSequence | None:
        return self.sequences.get(int(request.path_params["id"]))

    async def list_or_create(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        if request.method == "GET":
            items = [s.as_json() for s in self.sequences.values()]
            return JSONResponse({"sequences": items})
        try:
            payload = (await request.json())["sequence"]
            serie = str(payload["serie"]).strip()
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"errors": [{"error": "Sequence is missing"}]}, status_code=422)
        if not serie:
            return JSONResponse({"errors": [{"error": "Serie can't be blank"}]}, status_code=422)
        if any(s.serie == serie for s in self.sequences.values()):
            return JSONResponse(
                {"errors": [{"error": "Serie has already been taken"}]}, status_code=422
            )
        default = str(payload.get("default_sequence", "0")) == "1"
        new_id = self.add(serie, default=default, code=_code(serie))
        return JSONResponse({"sequence": self.sequences[new_id].as_json()}, status_code=201)

    async def show(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return Response(status_code=404)
        return JSONResponse({"sequence": found.as_json()})

    async def set_current(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return Response(status_code=404)
        for existing in self.sequences.values():
            existing.default = existing.id == found.id
        return Response(status_code=200)

    async def register(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return Response(status_code=404)
        if found.registered:
            return _refusal("Sequence is already registered", 422)
        if found.default:
            return _refusal("The default sequence cannot be registered", 406)
        if found.current_invoice_number > 0:
            return _refusal("A sequence with documents cannot be registered", 406)
        found.validation_code = _code(found.serie)
        return JSONResponse({"sequences": [found.as_json()]})

    async def at_communication(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        try:
            payload = (await request.json())["at_communication"]
            subuser = str(payload["at_subuser"])
            password = base64.b64decode(str(payload["at_password"]), validate=True)
            kind = str(payload["communication_type"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return Response(status_code=422)
        if not SUBUSER.match(subuser) or not password or kind not in api.COMMUNICATION_TYPES:
            return Response(status_code=422)
        # Keep only what a settings page would show: never the password.
        self.at_settings = {"at_subuser": subuser, "communication_type": kind}
        return JSONResponse({"success": "true"})


def _refusal(message: str, status: int) -> Response:
    return JSONResponse({"errors": [{"error": message}]}, status_code=status)


def _code(serie: str) -> str:
    return "".join(ch for ch in (serie.upper() + "ATCUD0000") if ch.isalnum())[:8]
