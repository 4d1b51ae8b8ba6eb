"""InvoiceXpress API client (sequences and AT communication).

Quirk: the API key travels as the `api_key` query parameter, the provider's only way. It is
registered as a secret, so log lines and messages carry `••••••` instead.

`register.json` answers `{"sequences": […]}` (InvoiceXpress API reference 2.0.0, Register
Sequence, https://docs.invoicexpress.com/sequences/registersequence), and refuses a default or
already used sequence: a refusal's own message (406 or any other 4xx) is shown when it has one.
"""

from __future__ import annotations

import base64
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderHTTP,
    ProviderRejected,
    ProviderUnavailable,
    new_client,
    status_sentence,
    unreadable_write,
)
from commands.invoicexpress.models import Sequence, SequenceEnvelope, SequenceList
from commands.secrets import register_secret

PROVIDER = "InvoiceXpress"

SEQUENCES = "/sequences.json"
SEQUENCE = "/sequences/{id}.json"
SET_CURRENT = "/sequences/{id}/set_current.json"
REGISTER = "/sequences/{id}/register.json"
AT_COMMUNICATION = "/api/v3/accounts/at_communication.json"

COMMUNICATION_TYPES = ("auto", "guides", "manual", "portal_at")

M = TypeVar("M", bound=BaseModel)


def base_url_for(account: str) -> str:
    return f"https://{account}.app.invoicexpress.com"


class InvoiceXpressClient:
    def __init__(self, http: ProviderHTTP) -> None:
        self.http = http

    @classmethod
    def open(
        cls, *, base_url: str, api_key: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> InvoiceXpressClient:
        register_secret(api_key)
        client = new_client(
            base_url=base_url,
            headers={"Accept": "application/json"},
            params={"api_key": api_key},
            transport=transport,
        )
        return cls(ProviderHTTP(PROVIDER, client))

    async def sequences(self) -> list[Sequence]:
        response = await self.http.send("GET", SEQUENCES, idempotent=True)
        return _model(SequenceList, self._ok(response), "the sequence list").sequences

    async def sequence(self, sequence_id: int) -> Sequence:
        response = await self.http.send("GET", SEQUENCE.format(id=sequence_id), idempotent=True)
        body = self._ok(response, sequence_id)
        return _model(SequenceEnvelope, body, f"sequence {sequence_id}").sequence

    async def set_current(self, sequence_id: int) -> None:
        # Documented with no body; setting the default twice is harmless, so it may be retried.
        response = await self.http.send("PUT", SET_CURRENT.format(id=sequence_id), idempotent=True)
        self._ok(response, sequence_id)

    async def create_sequence(self, serie: str, *, default: bool) -> Sequence:
        body = {"sequence": {"serie": serie, "default_sequence": "1" if default else "0"}}
        response = await self.http.send("POST", SEQUENCES, json=body, idempotent=False)
        what = f"the creation of sequence {serie}"
        answer = self._ok(response, write=what)
        return _model(SequenceEnvelope, answer, what, write=True).sequence

    async def register_sequence(self, sequence_id: int) -> Sequence:
        """The registered sequence, as the answer's list carries it (read again if it does not)."""
        response = await self.http.send("PUT", REGISTER.format(id=sequence_id), idempotent=False)
        what = f"the registration of sequence {sequence_id}"
        body = self._ok(response, sequence_id, write=what)
        if isinstance(body, dict) and isinstance(body.get("sequences"), list):
            listed = _model(SequenceList, body, what, write=True).sequences
            found = [s for s in listed if s.id == sequence_id]
            if found:
                return found[0]
        return await self.sequence(sequence_id)

    async def at_communication(
        self, *, subuser: str, password: str, communication_type: str
    ) -> None:
        encoded = base64.b64encode(password.encode()).decode()
        register_secret(password, encoded)
        body = {
            "at_communication": {
                "at_subuser": subuser,
                "at_password": encoded,
                "communication_type": communication_type,
            }
        }
        response = await self.http.send("POST", AT_COMMUNICATION, json=body, idempotent=False)
        self._ok(response, write="the change of the AT communication settings")

    def _ok(
        self, response: httpx.Response, sequence_id: int | None = None, *, write: str | None = None
    ) -> Any:
        """The answer's JSON (None when empty). `write` names the write the answer is to: then
        only a clear refusal (a 4xx, or 429) is an error, and anything else that is not
        readable is "outcome unknown" (`unreadable_write`)."""
        status = response.status_code
        if status == 401:
            raise ProviderAuthError(
                PROVIDER,
                "API key missing or wrong; check INVOICEXPRESS_API_KEY and INVOICEXPRESS_ACCOUNT",
                status=status,
            )
        if status == 404:
            what = f"no sequence {sequence_id}" if sequence_id is not None else "not found"
            raise ProviderRejected(PROVIDER, what, status=status)
        if status == 422:
            listed = error_messages(response) or "some parameters were incorrect"
            raise ProviderRejected(PROVIDER, listed, status=status)
        if status >= 500 and write is not None:
            # The API reference lists 200, 401, 404 and 422 for its writes and says nothing of
            # server errors, nor that a write answered with one was rolled back: a sequence may
            # have been created or registered before the 5xx, so it is "outcome unknown".
            raise unreadable_write(PROVIDER, response, write)
        if status == 429 or status >= 500:
            raise ProviderUnavailable(PROVIDER, status_sentence(status), status=status)
        if status >= 400:
            # 406 (a sequence the API will not register) and the rest: their own words first.
            said = error_messages(response)
            message = f"{said} (HTTP {status})" if said else status_sentence(status)
            raise ProviderRejected(PROVIDER, message, status=status)
        if write is not None and status >= 300:
            raise unreadable_write(PROVIDER, response, write)  # redirects are not followed
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:  # an HTML page, a cut-off body, bytes that are not text
            if write is not None:
                raise unreadable_write(PROVIDER, response, write) from None
            raise ProviderUnavailable(
                PROVIDER,
                f"it answered HTTP {status} with something that is not JSON",
                status=status,
            ) from None


def _model(model: type[M], body: Any, what: str, *, write: bool = False) -> M:
    """`body` read as `model`; a shape the API reference does not describe is explained."""
    try:
        return model.model_validate(body)
    except ValidationError:
        if write:
            raise OutcomeUnknown(
                PROVIDER,
                f"{what} was sent and accepted, but the answer came back in an unexpected shape",
            ) from None
        raise ProviderUnavailable(PROVIDER, f"{what} came back in an unexpected shape") from None


def error_messages(response: httpx.Response) -> str | None:
    """What a refusal's body says, or None when it says nothing readable.

    Documented: `{"errors":[{"error":"…"}]}` or a list of strings, sometimes empty; also read:
    `{"error": "…"}` and `{"message": "…"}`.
    """
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "errors" in body:
        errors = body["errors"]
    elif isinstance(body, dict):
        errors = [body[key] for key in ("error", "message") if isinstance(body.get(key), str)]
    else:
        errors = body
    if isinstance(errors, list):
        texts = [str(e.get("error", e)) if isinstance(e, dict) else str(e) for e in errors]
        texts = [t for t in texts if t]
        if texts:
            return "; ".join(texts)
    return None
