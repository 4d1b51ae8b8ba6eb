"""Contract tests of the InvoiceXpress client against its sandbox (odd bodies via MockTransport)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from commands.http import (
    USER_AGENT,
    OutcomeUnknown,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from commands.invoicexpress import client as api
from commands.invoicexpress.client import InvoiceXpressClient
from commands.invoicexpress.models import NOT_REGISTERED
from commands.invoicexpress.sandbox import SANDBOX_API_KEY, InvoiceXpressSandbox
from commands.sandbox import Recorded
from commands.secrets import MASK, redact


def default_id(sandbox: InvoiceXpressSandbox) -> int:
    [found] = [s.id for s in sandbox.sequences.values() if s.default]
    return found


def other_id(sandbox: InvoiceXpressSandbox) -> int:
    return next(s.id for s in sandbox.sequences.values() if not s.default)


def unregistered_id(sandbox: InvoiceXpressSandbox) -> int:
    """A sequence the API would register: unregistered, not the default, no documents yet."""
    return next(
        s.id
        for s in sandbox.sequences.values()
        if s.validation_code == NOT_REGISTERED and not s.default and not s.current_invoice_number
    )


def assert_common(request: Recorded, method: str, path: str) -> None:
    assert request.method == method
    assert request.path == path
    assert request.query == {"api_key": SANDBOX_API_KEY}
    assert request.headers["accept"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT


def json_body(request: Recorded) -> Any:
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.body)


# --- requests ----------------------------------------------------------------------------------


async def test_sequences_is_a_get_with_the_key_in_the_query(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    sequences = await client.sequences()
    [request] = sandbox.control.requests
    assert_common(request, "GET", "/sequences.json")
    assert request.body == b""
    stored = sandbox.sequences
    assert [s.id for s in sequences] == list(stored)
    for seq in sequences:
        kept = stored[seq.id]
        assert (seq.serie, seq.default_sequence) == (kept.serie, kept.default)
        assert seq.current_invoice_number == kept.current_invoice_number
        assert seq.validation_code == kept.validation_code
        assert seq.registered == (kept.validation_code != NOT_REGISTERED)
    assert sum(s.default_sequence for s in sequences) == 1


async def test_sequence_reads_one(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    wanted = other_id(sandbox)
    seq = await client.sequence(wanted)
    [request] = sandbox.control.requests
    assert_common(request, "GET", f"/sequences/{wanted}.json")
    assert (seq.id, seq.serie) == (wanted, sandbox.sequences[wanted].serie)
    assert seq.default_sequence is False


async def test_set_current_is_a_put_without_body_and_moves_the_default(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    old, new = default_id(sandbox), other_id(sandbox)
    await client.set_current(new)
    [request] = sandbox.control.requests
    assert_common(request, "PUT", f"/sequences/{new}/set_current.json")
    assert request.body == b""
    assert default_id(sandbox) == new
    assert not sandbox.sequences[old].default
    # Setting the default again is harmless.
    await client.set_current(new)
    assert default_id(sandbox) == new


@pytest.mark.parametrize(("default", "flag"), [(True, "1"), (False, "0")])
async def test_create_posts_serie_and_default_as_one_or_zero(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, default: bool, flag: str
) -> None:
    old_default = default_id(sandbox)
    created = await client.create_sequence("FT2027", default=default)
    [request] = sandbox.control.requests
    assert_common(request, "POST", "/sequences.json")
    assert json_body(request) == {"sequence": {"serie": "FT2027", "default_sequence": flag}}
    assert created.serie == "FT2027"
    assert created.id in sandbox.sequences
    assert created.default_sequence is default
    assert default_id(sandbox) == (created.id if default else old_default)
    # Creating also registers it with the tax authority: an ATCUD code comes back.
    assert created.registered
    assert created.validation_code == sandbox.sequences[created.id].validation_code


async def test_register_is_a_put_and_gives_an_atcud_code(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    target = unregistered_id(sandbox)
    registered = await client.register_sequence(target)
    [request] = sandbox.control.requests
    assert_common(request, "PUT", f"/sequences/{target}/register.json")
    assert request.body == b""
    assert registered.id == target
    assert registered.registered
    assert registered.validation_code == sandbox.sequences[target].validation_code != "N/D"
    seq = await client.sequence(target)
    assert seq.registered and seq.validation_code == registered.validation_code


async def test_the_sandbox_writes_sequences_as_the_reference_does(
    sandbox: InvoiceXpressSandbox,
) -> None:
    """Integer ids, `default_sequence` 1/0 and `current_<type>_…` fields, as in the reference."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sandbox.app()), base_url="http://sandbox"
    ) as raw:
        listed = (await raw.get("/sequences.json", params={"api_key": SANDBOX_API_KEY})).json()
        target = unregistered_id(sandbox)
        put = await raw.put(f"/sequences/{target}/register.json?api_key={SANDBOX_API_KEY}")
    first = listed["sequences"][0]
    assert isinstance(first["id"], int) and first["default_sequence"] in (0, 1)
    for kind in ("invoice", "invoice_receipt", "credit_note", "debit_note", "receipt"):
        assert isinstance(first[f"current_{kind}_number"], int)
        assert isinstance(first[f"current_{kind}_sequence_id"], int)
        assert isinstance(first[f"current_{kind}_validation_code"], str)
    assert "invoice_validation_code" not in first
    assert put.status_code == 200
    assert [s["id"] for s in put.json()["sequences"]] == [target]


@pytest.mark.parametrize(
    ("code", "registered"),
    [("ABCD1234", True), ("N/D", False), ("N/A", False)],
)
async def test_the_atcud_code_is_read_from_current_invoice_validation_code(
    answer: Callable[[httpx.Response], InvoiceXpressClient], code: str, registered: bool
) -> None:
    body = {
        "sequences": [
            {
                "id": 146090,
                "serie": "2022",
                "default_sequence": 0,
                "current_invoice_number": 0,
                "current_invoice_sequence_id": 146090,
                "current_invoice_validation_code": code,
                "current_credit_note_validation_code": "WXYZ9999",
            }
        ]
    }
    [sequence] = await answer(httpx.Response(200, json=body)).sequences()
    assert (sequence.id, sequence.validation_code) == (146090, code)
    assert sequence.registered is registered


async def test_a_sequence_with_documents_of_any_type_counts_as_used(
    answer: Callable[[httpx.Response], InvoiceXpressClient],
) -> None:
    unused = {"id": 1, "serie": "A", "current_invoice_number": 0, "current_receipt_number": 0}
    receipts = {"id": 2, "serie": "B", "current_invoice_number": "0", "current_receipt_number": 3}
    body = {"sequences": [unused, receipts]}
    first, second = await answer(httpx.Response(200, json=body)).sequences()
    assert (first.used, second.used) == (False, True)
    assert second.document_numbers == {"invoice": 0, "receipt": 3}


@pytest.mark.parametrize(
    ("serie", "message"),
    [
        ("default", "The default sequence cannot be registered (HTTP 406)"),
        ("used", "A sequence with documents cannot be registered (HTTP 406)"),
    ],
)
async def test_a_sequence_the_api_will_not_register_is_a_406_with_its_message(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, serie: str, message: str
) -> None:
    target = sandbox.add(serie, default=serie == "default", number=5 if serie == "used" else 0)
    with pytest.raises(ProviderRejected) as caught:
        await client.register_sequence(target)
    assert (caught.value.message, caught.value.status) == (message, 406)
    assert sandbox.sequences[target].validation_code == NOT_REGISTERED
    assert [r.method for r in sandbox.control.requests] == ["PUT"]


@pytest.mark.parametrize("password", ["s3cr3t-AT-pass", "pässwörd €/+=", " leading space"])
async def test_at_communication_posts_a_base64_password(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, password: str
) -> None:
    await client.at_communication(
        subuser="123456789/3", password=password, communication_type="guides"
    )
    [request] = sandbox.control.requests
    assert_common(request, "POST", "/api/v3/accounts/at_communication.json")
    body = json_body(request)
    assert set(body) == {"at_communication"}
    sent = body["at_communication"]
    assert set(sent) == {"at_subuser", "at_password", "communication_type"}
    assert sent["at_subuser"] == "123456789/3"
    assert sent["communication_type"] == "guides"
    assert base64.b64decode(sent["at_password"], validate=True).decode() == password
    assert password.encode() not in request.body
    assert sandbox.at_settings == {"at_subuser": "123456789/3", "communication_type": "guides"}


async def test_the_at_password_and_its_base64_form_become_secrets(
    client: InvoiceXpressClient,
) -> None:
    password = f"at-{uuid.uuid4().hex}"
    encoded = base64.b64encode(password.encode()).decode()
    await client.at_communication(
        subuser="123456789/3", password=password, communication_type="auto"
    )
    assert redact(f"{password} {encoded}") == f"{MASK} {MASK}"


def test_opening_registers_the_api_key_as_a_secret() -> None:
    key = f"ixkey-{uuid.uuid4().hex}"
    assert redact(f"key {key}") == f"key {key}"
    InvoiceXpressClient.open(base_url="https://acme.app.invoicexpress.com", api_key=key)
    assert redact(f"key {key}") == f"key {MASK}"


def test_base_url_for_an_account() -> None:
    assert api.base_url_for("acme") == "https://acme.app.invoicexpress.com"


# --- error mapping against the sandbox -----------------------------------------------------------

Call = Callable[[InvoiceXpressClient, InvoiceXpressSandbox], Awaitable[object]]

CALLS: dict[str, Call] = {
    "sequences": lambda c, s: c.sequences(),
    "sequence": lambda c, s: c.sequence(default_id(s)),
    "set_current": lambda c, s: c.set_current(other_id(s)),
    "create": lambda c, s: c.create_sequence("FT2027", default=False),
    "register": lambda c, s: c.register_sequence(unregistered_id(s)),
    "at_communication": lambda c, s: c.at_communication(
        subuser="123456789/3", password="pw-1234", communication_type="auto"
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
async def test_a_wrong_key_is_an_auth_error_for_every_call(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, delays: list[float], name: str
) -> None:
    sandbox.api_key = "rotated-elsewhere"
    with pytest.raises(ProviderAuthError) as caught:
        await CALLS[name](client, sandbox)
    error = caught.value
    assert error.status == 401
    assert error.provider == "InvoiceXpress"
    assert error.message.startswith("API key missing or wrong")
    assert "INVOICEXPRESS_API_KEY" in error.message
    assert len(sandbox.control.requests) == 1 and delays == []
    assert sandbox.at_settings is None


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.sequence(999),
        lambda c: c.set_current(999),
        lambda c: c.register_sequence(999),
    ],
)
async def test_an_unknown_id_is_no_sequence_n(
    client: InvoiceXpressClient,
    sandbox: InvoiceXpressSandbox,
    call: Callable[[InvoiceXpressClient], Awaitable[object]],
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await call(client)
    assert not isinstance(caught.value, ProviderAuthError)
    assert caught.value.message == "no sequence 999"
    assert caught.value.status == 404
    assert len(sandbox.control.requests) == 1


async def test_a_duplicate_serie_shows_the_providers_message(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    taken = sandbox.sequences[default_id(sandbox)].serie
    before = dict(sandbox.sequences)
    with pytest.raises(ProviderRejected) as caught:
        await client.create_sequence(taken, default=True)
    assert caught.value.message == "Serie has already been taken"
    assert caught.value.status == 422
    assert sandbox.sequences == before


async def test_registering_twice_shows_the_providers_message(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.register_sequence(default_id(sandbox))  # already has a code
    assert caught.value.message == "Sequence is already registered"


async def test_an_at_refusal_without_a_body_is_still_a_sentence(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.at_communication(
            subuser="not-a-nif", password="pw-1234", communication_type="auto"
        )
    assert caught.value.message == "some parameters were incorrect"
    assert caught.value.status == 422
    assert sandbox.at_settings is None


async def test_429_on_a_read_is_retried_then_reported(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, delays: list[float]
) -> None:
    sandbox.control.fail_status = 429
    with pytest.raises(ProviderUnavailable) as caught:
        await client.sequences()
    assert caught.value.message == "it is rate-limiting us; try again in a minute"
    assert caught.value.status == 429
    assert [r.method for r in sandbox.control.requests] == ["GET"] * 3
    assert delays == [0.5, 1.0]


async def test_a_read_succeeds_once_the_rate_limit_lifts(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    sandbox.control.fail_status = 429

    async def wait(delay: float) -> None:
        sandbox.control.fail_status = None

    client.http.sleep = wait
    sequences = await client.sequences()
    assert len(sequences) == len(sandbox.sequences)
    assert len(sandbox.control.requests) == 2


async def test_a_5xx_on_a_write_is_outcome_unknown_and_not_retried(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, delays: list[float]
) -> None:
    sandbox.control.fail_status = 500
    with pytest.raises(OutcomeUnknown) as caught:
        await client.create_sequence("FT2027", default=False)
    assert caught.value.message == (
        "the creation of sequence FT2027 was sent and InvoiceXpress answered with a server "
        "error (HTTP 500), which does not say whether it happened"
    )
    assert len(sandbox.control.requests) == 1
    assert delays == []


async def test_a_lost_answer_to_create_is_an_unknown_outcome(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    sandbox.control.drop = True
    with pytest.raises(OutcomeUnknown):
        await client.create_sequence("FT2027", default=False)
    assert len(sandbox.control.requests) == 1
    # The provider did act: asking again would have made a second one.
    assert [s.serie for s in sandbox.sequences.values()].count("FT2027") == 1


# --- 422 bodies the sandbox does not produce ------------------------------------------------------


@pytest.fixture
async def answer() -> AsyncIterator[Callable[[httpx.Response], InvoiceXpressClient]]:
    """A client whose every request gets the given response."""
    opened: list[InvoiceXpressClient] = []

    def make(response: httpx.Response) -> InvoiceXpressClient:
        client = InvoiceXpressClient.open(
            base_url="https://acme.app.invoicexpress.com",
            api_key="mock-key-1234",
            transport=httpx.MockTransport(lambda request: response),
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.http.aclose()


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(422, json={"errors": [{"error": "Serie is invalid"}, {"error": "x"}]}),
            "Serie is invalid; x",
        ),
        (
            httpx.Response(422, json=["Serie is invalid", "Name is too long"]),
            "Serie is invalid; Name is too long",
        ),
        (httpx.Response(422, json={"errors": ["Serie can't be blank"]}), "Serie can't be blank"),
        (httpx.Response(422, content=b""), "some parameters were incorrect"),
        (httpx.Response(422, json={"errors": []}), "some parameters were incorrect"),
        (httpx.Response(422, json=[]), "some parameters were incorrect"),
        (httpx.Response(422, json={"errors": [{"error": ""}]}), "some parameters were incorrect"),
        (httpx.Response(422, text="<html>Unprocessable</html>"), "some parameters were incorrect"),
        (httpx.Response(422, json={"errors": "bad"}), "some parameters were incorrect"),
    ],
)
async def test_422_bodies_become_the_providers_messages(
    answer: Callable[[httpx.Response], InvoiceXpressClient], response: httpx.Response, message: str
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await answer(response).create_sequence("FT2027", default=False)
    assert caught.value.message == message
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (403, ProviderRejected, "it answered HTTP 403"),
        (409, ProviderRejected, "it answered HTTP 409"),
        (
            502,
            OutcomeUnknown,
            "the registration of sequence 5 was sent and InvoiceXpress answered with a server "
            "error (HTTP 502), which does not say whether it happened",
        ),
        (
            302,
            OutcomeUnknown,
            "the registration of sequence 5 was sent, but InvoiceXpress's answer (HTTP 302, "
            "no content type) could not be read",
        ),
    ],
)
async def test_other_statuses_on_a_write(
    answer: Callable[[httpx.Response], InvoiceXpressClient],
    status: int,
    kind: type[Exception],
    message: str,
) -> None:
    with pytest.raises(kind) as caught:
        await answer(httpx.Response(status)).register_sequence(5)
    assert getattr(caught.value, "message", None) == message


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(406, json={"errors": [{"error": "Sequence can't be registered"}]}),
            "Sequence can't be registered (HTTP 406)",
        ),
        (httpx.Response(406, json=["Not acceptable here"]), "Not acceptable here (HTTP 406)"),
        (httpx.Response(403, json={"error": "Plan does not allow it"}), "Plan does not allow it"),
        (httpx.Response(409, json={"message": "Busy registering"}), "Busy registering (HTTP 409)"),
        (httpx.Response(406, text="<html>Not Acceptable</html>"), "it answered HTTP 406"),
        (httpx.Response(406, json={"errors": []}), "it answered HTTP 406"),
    ],
)
async def test_4xx_bodies_that_carry_a_message_show_it(
    answer: Callable[[httpx.Response], InvoiceXpressClient], response: httpx.Response, message: str
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await answer(response).register_sequence(5)
    assert caught.value.message.startswith(message)
    assert caught.value.status == response.status_code


async def test_a_register_answer_without_the_sequence_reads_it_again() -> None:
    seen: list[str] = []
    sequence = {"id": 5, "serie": "B", "current_invoice_validation_code": "ABCD1234"}

    def reply(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "PUT":
            return httpx.Response(200, json={"sequences": []})
        return httpx.Response(200, json={"sequence": sequence})

    client = InvoiceXpressClient.open(
        base_url="https://acme.app.invoicexpress.com",
        api_key="mock-key-1234",
        transport=httpx.MockTransport(reply),
    )
    try:
        registered = await client.register_sequence(5)
    finally:
        await client.http.aclose()
    assert (registered.id, registered.validation_code) == (5, "ABCD1234")
    assert seen == ["PUT /sequences/5/register.json", "GET /sequences/5.json"]


async def test_an_empty_success_body_is_fine_for_set_current(
    answer: Callable[[httpx.Response], InvoiceXpressClient],
) -> None:
    await answer(httpx.Response(204)).set_current(5)


async def test_default_sequence_may_come_as_a_number(
    answer: Callable[[httpx.Response], InvoiceXpressClient],
) -> None:
    body = {
        "sequences": [
            {"id": 1, "serie": "A", "default_sequence": 1, "current_invoice_number": None},
            {
                "id": 2,
                "serie": "B",
                "default_sequence": 0,
                "current_invoice_validation_code": "ABCD1234",
            },
        ]
    }
    first, second = await answer(httpx.Response(200, json=body)).sequences()
    assert (first.default_sequence, second.default_sequence) == (True, False)
    assert first.current_invoice_number == 0
    assert (first.registered, second.registered) == (False, True)
