"""The sandbox answers raw HTTP as the portal's article describes, so the client's contract
tests test something real: envelope, 401, refusals with HTTP 200, form-only writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commands.voipcloud import client as api
from commands.voipcloud.sandbox import (
    SANDBOX_BASE_URL,
    SANDBOX_GOOGLE_CAPTCHA,
    SANDBOX_TOKEN,
    VoipcloudSandbox,
    render,
)
from tests.support.voipcloud import TODAY, new_sandbox

MONTH = {"from_date": TODAY.replace(day=1).isoformat(), "to_date": TODAY.isoformat()}


@pytest.fixture
async def http(sandbox: VoipcloudSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=SANDBOX_BASE_URL,
        headers={"token": SANDBOX_TOKEN},
        transport=httpx.ASGITransport(app=sandbox.app()),
    ) as client:
        yield client


def body(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


async def test_article_example_is_this_months_statement_of_10023(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(api.CUSTOMER_BALANCE, params={"account_number": "10023", **MONTH})
    assert response.status_code == 200
    # The example from the article, byte for byte in its number forms.
    assert response.text == (
        '{"code":200,"data":{"opening_balance":245.71293,"payments":57,"adjustments":5,'
        '"call_charges":48.125,"other_charges":7.5,"total_charges":60.625,'
        '"closing_balance":242.08793}}'
    )


async def test_no_token_is_401(sandbox: VoipcloudSandbox) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app())) as bare:
        response = await bare.get(f"{SANDBOX_BASE_URL}{api.PARTNER_BALANCE}", params=MONTH)
    assert response.status_code == 401
    assert body(response)["code"] == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from_date": "2026-11-01"}, "to_date"),
        ({"from_date": "01/11/2026", "to_date": "2026-11-17"}, "from_date"),
        ({"from_date": "2026-11-10", "to_date": "2026-11-01"}, "to_date"),
    ],
)
async def test_bad_periods_are_refused_with_http_200(
    http: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await http.get(api.PARTNER_BALANCE, params=params)
    assert response.status_code == 200
    assert body(response)["code"] == 422
    assert list(body(response)["errors"]) == [field]


async def test_move_funds_takes_form_fields_only(
    sandbox: VoipcloudSandbox, http: httpx.AsyncClient
) -> None:
    before = sandbox.customers["10025"].ledger.balance()
    as_json = await http.put(
        api.MOVE_FUNDS, json={"account_number": "10025", "amount": "5", "description": "x"}
    )
    assert body(as_json)["code"] == 422
    urlencoded = await http.put(
        api.MOVE_FUNDS, data={"account_number": "10025", "amount": "5", "description": "x"}
    )
    assert body(urlencoded)["code"] == 200
    assert sandbox.customers["10025"].ledger.balance() == before + 5


@pytest.mark.parametrize(
    ("amount", "description", "field"),
    [("1.234", "x", "amount"), ("0", "x", "amount"), ("5", "", "description")],
)
async def test_move_funds_validation(
    http: httpx.AsyncClient, amount: str, description: str, field: str
) -> None:
    form = {"account_number": "10023", "amount": amount, "description": description}
    response = await http.put(api.MOVE_FUNDS, data=form)
    assert body(response)["code"] == 422
    assert field in body(response)["errors"]


async def test_post_methods_need_the_captcha(
    sandbox: VoipcloudSandbox, http: httpx.AsyncClient
) -> None:
    without = await http.post(api.RESET_PASSWORD, data={"account_number": "10023"})
    assert body(without)["code"] == 422
    assert sandbox.customers["10023"].password_resets == 0
    form = {"account_number": "10023", "google_captcha": SANDBOX_GOOGLE_CAPTCHA}
    with_it = await http.post(api.RESET_PASSWORD, data=form)
    assert body(with_it)["code"] == 200
    assert sandbox.customers["10023"].password_resets == 1


async def test_register_refuses_missing_and_malformed_fields(http: httpx.AsyncClient) -> None:
    form = {"email": "nope", "phone": "0412", "google_captcha": SANDBOX_GOOGLE_CAPTCHA}
    response = await http.post(api.REGISTER_CUSTOMER, data=form)
    assert body(response)["code"] == 422
    assert set(body(response)["errors"]) == {"first_name", "last_name", "email", "phone"}


def test_every_statement_adds_up_over_any_period(sandbox: VoipcloudSandbox) -> None:
    first = TODAY.replace(day=1) - timedelta(days=40)
    ledgers = [c.ledger for c in sandbox.customers.values()] + [sandbox.partner]
    for ledger in ledgers:
        for start, end in [(first, TODAY), (TODAY.replace(day=1), TODAY), (first, first)]:
            s = ledger.statement(start, end)
            charges = s["adjustments"] + s["call_charges"] + s["other_charges"]
            assert s["total_charges"] == charges
            assert s["closing_balance"] == s["opening_balance"] + s["payments"] - charges
            assert s["closing_balance"] == ledger.balance(before=end + timedelta(days=1))


def test_seeded_accounts() -> None:
    sandbox = new_sandbox(date(2026, 3, 31))
    assert set(sandbox.customers) == {"10023", "10024", "10025"}
    assert sandbox.customers["10023"].credit_limit == Decimal("-55")
    assert sandbox.customers["10024"].ledger.balance() < 0  # within its credit limit
    assert not sandbox.customers["10025"].email_confirmed


def test_render_writes_decimals_as_plain_json_numbers() -> None:
    assert render({"a": Decimal("245.71293"), "b": Decimal("-55"), "c": Decimal("7.50")}) == (
        '{"a":245.71293,"b":-55,"c":7.5}'
    )
    assert render([Decimal("1E+2"), Decimal("-0.00"), "x", None, True]) == '[100,0,"x",null,true]'
