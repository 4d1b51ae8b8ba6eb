"""Contract tests: the client against the sandbox, in process (method, path, query, header,
body encoding, the `{"code", "data"}` envelope, Decimal precision, error mapping, retries)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal

import httpx
import pytest

from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from commands.secrets import MASK, redact
from commands.voipcloud import client as api
from commands.voipcloud.budget import BudgetSpent, RateLimit
from commands.voipcloud.client import Paths, VoipcloudClient
from commands.voipcloud.sandbox import SANDBOX_GOOGLE_CAPTCHA, SANDBOX_TOKEN, VoipcloudSandbox
from tests.support.voipcloud import TODAY, Clock, form_fields, new_sandbox, open_client

MONTH = (TODAY.replace(day=1), TODAY)
AUTH_SENTENCE = "wrong key, or this server's IP is not on the portal's allow-list"


async def test_customer_balance_request(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    await client.customer_balance("10023", date(2026, 11, 1), date(2026, 11, 17))
    (sent,) = sandbox.control.requests
    assert (sent.method, sent.path) == ("GET", api.CUSTOMER_BALANCE)
    assert sent.query == {
        "account_number": "10023",
        "from_date": "2026-11-01",
        "to_date": "2026-11-17",
    }
    assert sent.headers["token"] == SANDBOX_TOKEN
    assert sent.body == b""
    assert "google_captcha" not in sent.query


async def test_amounts_keep_the_precision_they_were_sent_with(client: VoipcloudClient) -> None:
    statement = await client.customer_balance("10023", *MONTH)
    # The article's example, as Decimal: no float ever rounds these.
    assert statement.opening_balance == Decimal("245.71293")
    assert str(statement.opening_balance) == "245.71293"
    assert str(statement.call_charges) == "48.125"
    assert str(statement.closing_balance) == "242.08793"
    assert all(isinstance(value, Decimal) for _, value in statement.lines())


async def test_envelope_is_parsed_without_floats() -> None:
    body = b'{"code": 200, "data": {"customer_balance": 0.10000000000000000555, "customer_credit_limit": -55}}'  # noqa: E501

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    client = mock_client(answer)
    transfer = await client.move_funds("10023", Decimal("1"), "x")
    assert transfer.customer_balance == Decimal("0.10000000000000000555")
    assert transfer.customer_credit_limit == Decimal("-55")


async def test_partner_balance_request(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    statement = await client.partner_balance(*MONTH)
    (sent,) = sandbox.control.requests
    assert (sent.method, sent.path) == ("GET", api.PARTNER_BALANCE)
    assert sent.query == {"from_date": MONTH[0].isoformat(), "to_date": MONTH[1].isoformat()}
    assert sent.headers["token"] == SANDBOX_TOKEN
    assert statement.closing_balance == sandbox.partner.balance()


async def test_move_funds_is_a_multipart_put(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    await client.move_funds("10023", Decimal("-12.5"), "Refund of March top-up")
    (sent,) = sandbox.control.requests
    assert (sent.method, sent.path) == ("PUT", api.MOVE_FUNDS)
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["token"] == SANDBOX_TOKEN
    # PUT is not a POST method: no captcha on it.
    assert form_fields(sent) == {
        "account_number": "10023",
        "amount": "-12.50",
        "description": "Refund of March top-up",
    }


async def test_move_funds_moves_both_balances(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    customer_before = await client.customer_balance("10023", *MONTH)
    partner_before = await client.partner_balance(*MONTH)
    assert customer_before.closing_balance is not None
    assert partner_before.closing_balance is not None

    transfer = await client.move_funds("10023", Decimal("50.00"), "top-up")

    assert transfer.customer_balance == customer_before.closing_balance + Decimal("50.00")
    assert transfer.customer_credit_limit == Decimal("-55")
    customer_after = await client.customer_balance("10023", *MONTH)
    partner_after = await client.partner_balance(*MONTH)
    assert customer_after.closing_balance == transfer.customer_balance
    assert partner_after.closing_balance == partner_before.closing_balance - Decimal("50.00")


@pytest.mark.parametrize(
    ("call", "path"),
    [
        ("confirm_email", api.CONFIRM_EMAIL),
        ("login_url", api.LOGIN_CUSTOMER),
        ("reset_password", api.RESET_PASSWORD),
    ],
)
async def test_post_methods_send_the_account_and_the_captcha(
    sandbox: VoipcloudSandbox, client: VoipcloudClient, call: str, path: str
) -> None:
    await getattr(client, call)("10025")
    (sent,) = sandbox.control.requests
    assert (sent.method, sent.path) == ("POST", path)
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert sent.headers["token"] == SANDBOX_TOKEN
    assert form_fields(sent) == {
        "account_number": "10025",
        "google_captcha": SANDBOX_GOOGLE_CAPTCHA,
    }


async def test_register_customer_sends_the_form(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    registration = await client.register_customer(
        first_name="Ana",
        last_name="Lima",
        email="ana@example.com",
        phone="+351912345678",
        company="Lima Lda",
    )
    (sent,) = sandbox.control.requests
    assert (sent.method, sent.path) == ("POST", api.REGISTER_CUSTOMER)
    assert form_fields(sent) == {
        "first_name": "Ana",
        "last_name": "Lima",
        "email": "ana@example.com",
        "phone": "+351912345678",
        "company": "Lima Lda",
        "google_captcha": SANDBOX_GOOGLE_CAPTCHA,
    }
    # The sandbox answers the number as a JSON integer; it becomes text.
    assert registration.account_number in sandbox.customers
    assert sandbox.customers[registration.account_number].email == "ana@example.com"


async def test_no_captcha_field_when_none_is_configured() -> None:
    sandbox = VoipcloudSandbox(google_captcha=None, today=lambda: TODAY)
    client = open_client(sandbox, google_captcha=None)
    await client.reset_password("10023")
    assert form_fields(sandbox.control.requests[0]) == {"account_number": "10023"}


async def test_error_code_in_a_200_answer_is_an_error(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.customer_balance("99999", *MONTH)
    assert caught.value.message == "Customer not found (code 404)"
    assert caught.value.status == 200  # the HTTP status; the refusal was in the body


async def test_validation_errors_show_the_portal_messages(client: VoipcloudClient) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.register_customer(
            first_name="Jane",
            last_name="Citizen",
            email="jane@example.com.au",  # 10023's address
            phone="+61412345678",
        )
    assert caught.value.message == "The email has already been taken (code 422)"


async def test_wrong_captcha_is_refused(sandbox: VoipcloudSandbox) -> None:
    client = open_client(sandbox, google_captcha="not-the-right-one")
    with pytest.raises(ProviderRejected, match="google captcha verification failed"):
        await client.confirm_email("10025")
    assert not sandbox.customers["10025"].email_confirmed


async def test_wrong_token_is_401_with_both_causes(sandbox: VoipcloudSandbox) -> None:
    client = open_client(sandbox, token="wrong-token-value")
    with pytest.raises(ProviderAuthError) as caught:
        await client.partner_balance(*MONTH)
    assert AUTH_SENTENCE in caught.value.message
    assert caught.value.status == 401
    assert len(sandbox.control.requests) == 1  # a 401 is not retried


async def test_ip_not_allowed_is_401_too(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    sandbox.ip_allowed = False
    with pytest.raises(ProviderAuthError, match=AUTH_SENTENCE):
        await client.move_funds("10023", Decimal("5"), "x")
    assert sandbox.customers["10023"].ledger.balance() == Decimal("242.08793")


async def test_reads_retry_5xx_then_give_up(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    sandbox.control.fail_status = 503
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        await client.customer_balance("10023", *MONTH)
    assert [r.method for r in sandbox.control.requests] == ["GET", "GET", "GET"]


async def test_a_5xx_to_a_write_is_outcome_unknown_and_not_retried(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    sandbox.control.fail_status = 502
    with pytest.raises(OutcomeUnknown) as caught:
        await client.move_funds("10023", Decimal("5"), "x")
    assert caught.value.message == (
        "the transfer for customer 10023 was sent and VoIPcloud answered with a server error "
        "(HTTP 502), which does not say whether it happened"
    )
    assert [r.method for r in sandbox.control.requests] == ["PUT"]


async def test_lost_answer_to_move_funds_is_outcome_unknown_and_never_resent(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    before = sandbox.customers["10023"].ledger.balance()
    sandbox.control.drop = True
    with pytest.raises(OutcomeUnknown):
        await client.move_funds("10023", Decimal("20.00"), "top-up")
    assert [r.method for r in sandbox.control.requests] == ["PUT"]
    # The portal acted: that is why it must not be sent again blindly.
    assert sandbox.customers["10023"].ledger.balance() == before + Decimal("20.00")


async def test_lost_answer_to_a_read_is_retried(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    sandbox.control.drop = True
    with pytest.raises(ProviderUnavailable):
        await client.partner_balance(*MONTH)
    assert len(sandbox.control.requests) == 3


async def test_login_url_is_registered_as_a_secret_when_received(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    url = await client.login_url("10023")
    key = url.rsplit("/", 1)[1]
    assert sandbox.login_keys[key] == "10023"
    assert redact(f"issued {url} to someone") == f"issued {MASK} to someone"
    assert key not in redact(f"the key was {key}")


async def test_budget_is_spent_before_sending(sandbox: VoipcloudSandbox) -> None:
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("2/1m"), clock=clock)
    await client.customer_balance("10023", *MONTH)
    await client.move_funds("10023", Decimal("1"), "x")
    with pytest.raises(BudgetSpent, match="budget \\(2 per 1 min\\) is spent"):
        await client.confirm_email("10023")
    assert len(sandbox.control.requests) == 2  # the third never left


async def test_reports_wait_for_the_budget(sandbox: VoipcloudSandbox) -> None:
    clock = Clock()
    client = open_client(sandbox, rate_limit=RateLimit.parse("2/1m"), clock=clock)
    start = clock.now
    for _ in range(3):
        await client.customer_balance("10023", *MONTH, wait=True)
    assert len(sandbox.control.requests) == 3
    assert (clock.now - start).total_seconds() == 60


# --- paths and answers the sandbox does not give ---------------------------------------------


def mock_client(
    answer: Callable[[httpx.Request], httpx.Response], *, paths: Paths | None = None
) -> VoipcloudClient:
    """A client whose portal is `answer`, at a base URL with a path like the real one."""
    return VoipcloudClient.open(
        base_url="https://au.voipcloud.online/api/integration/v2",
        token="mock-voipcloud-token",
        google_captcha="mock-google-captcha",
        paths=paths or Paths(),
        rate_limit=None,
        transport=httpx.MockTransport(answer),
    )


async def test_paths_follow_the_base_url_and_the_overrides() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 200, "data": {"opening_balance": 1}})

    client = mock_client(answer, paths=Paths(customer_balance="/billing/customer-balance"))
    await client.customer_balance("10023", *MONTH)
    await client.partner_balance(*MONTH)
    assert [r.url.path for r in seen] == [
        "/api/integration/v2/billing/customer-balance",
        "/api/integration/v2/get-partner-balance",
    ]
    assert seen[0].url.host == "au.voipcloud.online"


async def test_an_unknown_path_points_at_its_variable() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>Not Found</html>")

    client = mock_client(answer, paths=Paths(move_funds="/move-fund"))
    with pytest.raises(ProviderRejected) as caught:
        await client.move_funds("10023", Decimal("1"), "x")
    assert caught.value.message == (
        "the portal has no /move-fund (HTTP 404); check VOIPCLOUD_PATH_MOVE_FUNDS"
    )


async def test_401_in_the_body_is_an_auth_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 401, "message": "Not authorised"})

    with pytest.raises(ProviderAuthError, match=AUTH_SENTENCE):
        await mock_client(answer).partner_balance(*MONTH)


async def test_a_non_json_answer_is_explained() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    with pytest.raises(
        ProviderRejected, match="without the expected JSON; check VOIPCLOUD_BASE_URL"
    ):
        await mock_client(answer).partner_balance(*MONTH)


async def test_an_unexpected_shape_is_explained() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"opening_balance": "n/a"}})

    with pytest.raises(ProviderRejected, match=r"unexpected shape \(fields: opening_balance\)"):
        await mock_client(answer).customer_balance("10023", *MONTH)


async def test_an_accepted_write_in_an_unexpected_shape_is_outcome_unknown() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"code": 200, "data": {"balance": "n/a"}})

    with pytest.raises(OutcomeUnknown) as caught:
        await mock_client(answer).move_funds("10023", Decimal("1"), "x")
    assert caught.value.message == (
        "the transfer for customer 10023 was sent and accepted, but the answer came back in an "
        "unexpected shape (fields: balance)"
    )


async def test_secrets_echoed_by_the_portal_are_masked_in_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        echoed = f"token {request.headers['token']} with captcha mock-google-captcha rejected"
        return httpx.Response(200, content=json.dumps({"code": 403, "message": echoed}))

    with pytest.raises(ProviderRejected) as caught:
        await mock_client(answer).reset_password("10023")
    text = f"{caught.value} {caught.value.message}"
    assert "mock-voipcloud-token" not in text
    assert "mock-google-captcha" not in text
    assert "(code 403)" in text


async def test_sandbox_statement_adds_up_as_in_the_article() -> None:
    sandbox = new_sandbox()
    statement = await open_client(sandbox).customer_balance("10024", *MONTH)
    assert statement.total_charges == (
        (statement.adjustments or 0)
        + (statement.call_charges or 0)
        + (statement.other_charges or 0)
    )
    assert statement.closing_balance == (
        (statement.opening_balance or 0)
        + (statement.payments or 0)
        - (statement.total_charges or 0)
    )
