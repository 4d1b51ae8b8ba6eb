"""Contract tests: the client against the sandbox, in process (method, path, query, headers,
body encoding, paging, error mapping)."""

from __future__ import annotations

import json
from datetime import date
from typing import Literal

import httpx
import pytest

from commands.activeplatform import client as api
from commands.activeplatform.client import ActivePlatformClient, error_text
from commands.activeplatform.sandbox import SANDBOX_TOKEN, ActivePlatformSandbox
from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderHTTP,
    ProviderRejected,
    ProviderUnavailable,
    new_client,
)
from tests.support.activeplatform import Sleeps, open_client

OCTOBER = (date(2026, 10, 1), date(2026, 10, 31))


def stored_ids(sandbox: ActivePlatformSandbox, reseller: str) -> list[str]:
    return [str(a.id) for a in sandbox.accounts[reseller]]


async def test_every_request_carries_the_token_and_the_json_api_media_type(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    await client.accounts_page("1", number=1, size=10)
    await client.notify_closing("1", ["2003001"], *OCTOBER)

    assert [r.method for r in sandbox.control.requests] == ["GET", "POST"]
    for recorded in sandbox.control.requests:
        assert recorded.headers["x-api-token"] == SANDBOX_TOKEN
        assert recorded.headers["content-type"] == "application/vnd.api+json"
        assert recorded.headers["accept"] == "application/vnd.api+json"


async def test_accounts_page_sends_json_api_paging_and_the_email_filter(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    wanted = sandbox.accounts["1"][7].email
    page = await client.accounts_page("1", number=2, size=25, email=wanted)

    recorded = sandbox.control.requests[0]
    assert recorded.path == "/api/v3/resellers/1/accounts"
    assert recorded.query == {"page[number]": "2", "page[size]": "25", "filter[email]": wanted}
    assert page.data == []  # one account matches, so page 2 of 25 is empty


async def test_accounts_reads_every_page_by_the_links(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox, page_size=100)
    accounts = await client.accounts("1")

    assert [a.id for a in accounts] == stored_ids(sandbox, "1")
    pages = [(r.query["page[number]"], r.query["page[size]"]) for r in sandbox.control.requests]
    assert pages == [("1", "100"), ("2", "100"), ("3", "100")]
    first = accounts[0]
    assert (first.name, first.email, first.status) == (
        sandbox.accounts["1"][0].name,
        sandbox.accounts["1"][0].email,
        "active",
    )


@pytest.mark.parametrize(
    ("paging", "page_size", "requests"),
    [
        ("meta", 100, 4),  # counts are not trusted: pages until an empty one
        ("meta", 115, 3),
        ("bare", 100, 4),  # the third page is short, and a short page does not end the list
        ("bare", 115, 3),  # two full pages, then an empty one
    ],
)
async def test_without_links_accounts_are_read_until_an_empty_page(
    sandbox: ActivePlatformSandbox,
    paging: Literal["meta", "bare"],
    page_size: int,
    requests: int,
) -> None:
    sandbox.paging = paging
    client = open_client(sandbox, page_size=page_size)
    accounts = await client.accounts("1")

    assert [a.id for a in accounts] == stored_ids(sandbox, "1")
    assert len(sandbox.control.requests) == requests
    assert [r.query["page[number]"] for r in sandbox.control.requests] == [
        str(n) for n in range(1, requests + 1)
    ]


@pytest.mark.parametrize("paging", ["links", "meta", "bare"])
async def test_a_server_that_serves_fewer_than_asked_skips_no_account(
    sandbox: ActivePlatformSandbox, paging: Literal["links", "meta", "bare"]
) -> None:
    # The reference gives no maximum page size; a server with one of its own answers 40 to
    # every page[size]=100. Stopping at the first short page would lose 190 of 230 accounts.
    sandbox.paging = paging
    sandbox.max_page_size = 40
    client = open_client(sandbox, page_size=100)
    accounts = await client.accounts("1")

    assert [a.id for a in accounts] == stored_ids(sandbox, "1")
    asked = [r.query["page[number]"] for r in sandbox.control.requests]
    # 230 accounts at 40 a page: six pages, and without links one more, empty, to be sure.
    assert asked == [str(n) for n in range(1, 7 if paging == "links" else 8)]


async def test_a_page_without_links_or_meta_is_read_as_documented() -> None:
    """A body with only `data`, as the reference shows it, pages on until an empty one."""
    pages = {1: ["11", "12"], 2: ["13"], 3: []}
    asked: list[tuple[str, str]] = []

    def serve(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["page[number]"])
        asked.append((request.url.params["page[number]"], request.url.params["page[size]"]))
        data = [{"id": i, "type": "accounts", "attributes": {}} for i in pages[number]]
        return httpx.Response(200, json={"data": data})

    http = new_client(base_url="http://ap.test", transport=httpx.MockTransport(serve))
    client = ActivePlatformClient(ProviderHTTP(api.PROVIDER, http))
    accounts = await client.accounts("1")

    assert [a.id for a in accounts] == ["11", "12", "13"]
    assert asked == [("1", "50"), ("2", "50"), ("3", "50")]  # the documented default size


async def test_links_next_null_ends_the_list_without_an_empty_page() -> None:
    served: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        served.append(request.url.params["page[number]"])
        body = {"data": [{"id": "7"}], "links": {"self": "/accounts?page[number]=1", "next": None}}
        return httpx.Response(200, json=body)

    http = new_client(base_url="http://ap.test", transport=httpx.MockTransport(serve))
    client = ActivePlatformClient(ProviderHTTP(api.PROVIDER, http), page_size=1)
    assert [a.id for a in await client.accounts("1")] == ["7"]
    assert served == ["1"]


async def test_links_without_a_next_key_do_not_end_the_list() -> None:
    served: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        number = request.url.params["page[number]"]
        served.append(number)
        data = [{"id": number}] if number in {"1", "2"} else []
        return httpx.Response(200, json={"data": data, "links": {"self": "/accounts"}})

    http = new_client(base_url="http://ap.test", transport=httpx.MockTransport(serve))
    client = ActivePlatformClient(ProviderHTTP(api.PROVIDER, http), page_size=1)
    assert [a.id for a in await client.accounts("1")] == ["1", "2"]
    assert served == ["1", "2", "3"]


async def test_accounts_stops_when_a_server_repeats_its_first_page() -> None:
    # A server that ignores page[number] and gives no links or meta must not loop for ever.
    calls: list[httpx.Request] = []

    def repeat(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        data = [{"id": str(n), "attributes": {"name": f"A{n}"}} for n in range(2)]
        return httpx.Response(200, json={"data": data})

    http = new_client(base_url="http://ap.test", transport=httpx.MockTransport(repeat))
    client = ActivePlatformClient(ProviderHTTP(api.PROVIDER, http), page_size=2)
    accounts = await client.accounts("1")

    assert [a.id for a in accounts] == ["0", "1"]
    assert len(calls) == 2


async def test_an_account_list_of_another_shape_is_a_provider_error() -> None:
    def odd(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"accounts": [{"id": 1}]})

    http = new_client(base_url="http://ap.test", transport=httpx.MockTransport(odd))
    client = ActivePlatformClient(ProviderHTTP(api.PROVIDER, http))
    with pytest.raises(ProviderUnavailable) as caught:
        await client.accounts("1")
    assert caught.value.message == "the account list came back in an unexpected shape"


async def test_accounts_email_filter_returns_only_those_accounts(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    picked = [sandbox.accounts["1"][3], sandbox.accounts["1"][150]]
    accounts = await client.accounts("1", email=",".join(a.email.upper() for a in picked))

    assert [a.id for a in accounts] == [str(a.id) for a in picked]


async def test_notify_closing_posts_numbers_and_iso_dates_and_takes_null_as_success(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    # The sandbox answers 200 with the body `null`; returning without an error is success.
    await client.notify_closing("2", ["2005001", "2005003"], *OCTOBER)

    recorded = sandbox.control.requests[0]
    assert (recorded.method, recorded.path) == (
        "POST",
        "/api/v3/resellers/2/notifications/external_invoices",
    )
    assert recorded.query == {}
    assert json.loads(recorded.body) == {
        "account_ids": [2005001, 2005003],
        "start_date": "2026-10-01",
        "end_date": "2026-10-31",
    }
    assert [(n.reseller, n.account_ids) for n in sandbox.notifications] == [
        ("2", (2005001, 2005003))
    ]


async def test_notify_closing_to_a_downstream_resellers_accounts_is_accepted(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    await client.notify_closing("1", ["2003001", "2005002"], *OCTOBER)

    assert sandbox.notifications[0].account_ids == (2003001, 2005002)


async def test_422_shows_the_title_of_the_errors_object(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox)
    with pytest.raises(ProviderRejected) as empty:
        await client.notify_closing("1", [], *OCTOBER)
    with pytest.raises(ProviderRejected) as unknown:
        await client.notify_closing("1", ["2003001", "999"], *OCTOBER)

    assert empty.value.status == 422
    assert empty.value.message == "param is missing or the value is empty: account_ids"
    assert unknown.value.message == "accounts not found: 999"
    assert sandbox.notifications == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"errors":{"title":"end_date is wrong","status":"422"}}', "end_date is wrong"),
        (b'{"errors":[{"title":"one"},{"detail":"two"}]}', "one; two"),
        (b'{"errors":{}}', "some parameters were incorrect"),
        (b"<html>oops</html>", "some parameters were incorrect"),
    ],
)
def test_error_text_reads_an_errors_object_or_list(body: bytes, expected: str) -> None:
    assert error_text(httpx.Response(422, content=body)) == expected


async def test_a_wrong_token_is_an_auth_error_that_names_the_variable_not_the_token(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox, token="wrong-token-1234")
    with pytest.raises(ProviderAuthError) as caught:
        await client.accounts("1")

    assert caught.value.status == 401
    assert "ACTIVEPLATFORM_API_TOKEN" in caught.value.message
    assert "wrong-token-1234" not in str(caught.value)
    assert len(sandbox.control.requests) == 1  # a 401 is not retried


@pytest.mark.parametrize(
    ("reseller", "status", "words"),
    [("3", 403, "may not act for reseller 3"), ("99", 404, "no reseller 99")],
)
async def test_forbidden_and_unknown_resellers_get_their_own_sentences(
    sandbox: ActivePlatformSandbox, reseller: str, status: int, words: str
) -> None:
    client = open_client(sandbox)
    with pytest.raises(ProviderRejected) as listing:
        await client.accounts(reseller)
    with pytest.raises(ProviderRejected) as notifying:
        await client.notify_closing(reseller, ["2007001"], *OCTOBER)

    for caught in (listing.value, notifying.value):
        assert caught.status == status
        assert words in caught.message
    assert sandbox.notifications == []


async def test_reads_are_retried_with_backoff_on_5xx(sandbox: ActivePlatformSandbox) -> None:
    sleeps = Sleeps()
    client = open_client(sandbox, sleeps=sleeps)
    sandbox.control.fail_status = 503
    with pytest.raises(ProviderUnavailable) as caught:
        await client.accounts("1")

    assert len(sandbox.control.requests) == 3
    assert sleeps.delays == [0.5, 1.0]
    assert "HTTP 503" in caught.value.message


async def test_a_5xx_to_a_notification_is_outcome_unknown_and_never_retried(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    sandbox.control.fail_status = 500
    with pytest.raises(OutcomeUnknown) as caught:
        await client.notify_closing("1", ["2003001"], *OCTOBER)

    assert caught.value.message == (
        "the notification of 1 account was sent and ActivePlatform answered with a server "
        "error (HTTP 500), which does not say whether it happened"
    )

    assert len(sandbox.control.requests) == 1


async def test_a_lost_answer_to_a_notification_is_outcome_unknown(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    sandbox.control.drop = True
    with pytest.raises(OutcomeUnknown):
        await client.notify_closing("1", ["2003001"], *OCTOBER)

    assert len(sandbox.control.requests) == 1
    assert len(sandbox.notifications) == 1  # the provider acted on it
