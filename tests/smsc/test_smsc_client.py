"""Contract tests of the SMSC client against the sandbox (and odd bodies via MockTransport)."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from itertools import pairwise

import httpx
import pytest

from commands.http import (
    OutcomeUnknown,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from commands.smsc import client as api
from commands.smsc.client import DocumentNotFound
from commands.smsc.pdf import render_pdf
from commands.smsc.queue import MINUTE
from commands.smsc.sandbox import SANDBOX_LOGIN, SANDBOX_PASSWORD
from tests.support.smsc import Env, FakeClock, mock_client

PDF = render_pdf(["Sum: 10.00"], title="test document")


# --- requests ----------------------------------------------------------------------------------


async def test_create_sends_one_get_with_login_password_user_and_sum(env: Env) -> None:
    created = await env.client.create_invoice("acme", Decimal("1500"), service="SMS package")

    [request] = env.sandbox.control.requests
    assert request.method == "GET"
    assert request.path == api.DOCUMENTS == "/sys/documents.php"
    assert request.query == {
        "login": SANDBOX_LOGIN,
        "psw": SANDBOX_PASSWORD,
        "add_account": "1",
        "user": "acme",
        "sum": "1500.00",
        "service": "SMS package",
    }
    assert request.body == b""
    stored = env.sandbox.invoices[created.id]
    assert (stored.client_id, stored.sum, stored.service) == (101, Decimal("1500"), "SMS package")
    assert created.sum == Decimal("1500.00")
    assert isinstance(created.sum, Decimal)
    assert created.pdf == env.sandbox.pdf("invoice", stored)
    assert created.pdf_problem is None


async def test_a_sub_client_id_is_sent_as_user_id_never_with_user(env: Env) -> None:
    pdf = await env.client.invoice_pdf("id:101", 501)

    [request] = env.sandbox.control.requests
    assert request.query == {
        "login": SANDBOX_LOGIN,
        "psw": SANDBOX_PASSWORD,
        "get_account": "1",
        "user_id": "101",
        "id": "501",
    }
    assert pdf.startswith(b"%PDF-")
    assert b"No. 501" in pdf and b"1500.00" in pdf


async def test_create_without_service_sends_no_service(env: Env) -> None:
    await env.client.create_invoice("globex", Decimal("0.50"))
    [request] = env.sandbox.control.requests
    assert "service" not in request.query
    assert request.query["sum"] == "0.50"


async def test_act_by_id_and_by_number(env: Env) -> None:
    by_id = await env.client.act_pdf("acme", act_id=701)
    by_num = await env.client.act_pdf("acme", num=7)

    first, second = env.sandbox.control.requests
    assert first.query["get_act"] == "1" and first.query["id"] == "701"
    assert "num" not in first.query
    assert second.query["get_act"] == "1" and second.query["num"] == "7"
    assert "id" not in second.query
    assert by_id == by_num  # act 701 is act number 7
    assert b"SMSC act No. 7" in by_id and b"1820.50" in by_id


async def test_act_needs_exactly_one_of_id_and_num(env: Env) -> None:
    with pytest.raises(ValueError):
        await env.client.act_pdf("acme", act_id=701, num=7)
    with pytest.raises(ValueError):
        await env.client.act_pdf("acme")
    assert env.sandbox.control.requests == []


# --- errors from the sandbox, all with HTTP 200 ------------------------------------------------


async def test_wrong_password_is_an_auth_error_naming_both_causes(env: Env) -> None:
    client = env.client_for(password="not-the-smsc-password")
    with pytest.raises(ProviderAuthError) as caught:
        await client.invoice_pdf("acme", 501)
    assert caught.value.status == 200
    assert "wrong login/password, or this server's IP is not allowed" in caught.value.message
    assert "not-the-smsc-password" not in str(caught.value)
    await client.aclose()


async def test_blocked_ip(env: Env) -> None:
    env.sandbox.ip_blocked = True
    with pytest.raises(ProviderRejected) as caught:
        await env.client.invoice_pdf("acme", 501)
    assert "blocked this server's IP address for a while" in caught.value.message


async def test_unknown_sub_client(env: Env) -> None:
    with pytest.raises(DocumentNotFound) as caught:
        await env.client.invoice_pdf("initech", 501)
    assert caught.value.code == 6
    assert caught.value.message.startswith("SMSC has no sub-client initech;")
    assert '(SMSC: "sublogin not found")' in caught.value.message


async def test_unknown_document_and_another_sub_clients_document(env: Env) -> None:
    with pytest.raises(DocumentNotFound) as missing:
        await env.client.invoice_pdf("acme", 999)
    env.clock.now += 2 * MINUTE
    with pytest.raises(DocumentNotFound) as foreign:
        await env.client.invoice_pdf("globex", 501)  # 501 belongs to acme
    env.clock.now += 2 * MINUTE
    with pytest.raises(DocumentNotFound) as act:
        await env.client.act_pdf("id:101", num=8)  # act number 8 belongs to globex

    assert missing.value.code == foreign.value.code == act.value.code == 7
    assert missing.value.message.startswith("SMSC has no invoice 999 for sub-client acme")
    assert foreign.value.message.startswith("SMSC has no invoice 501 for sub-client globex")
    assert act.value.message.startswith("SMSC has no act number 8 for sub-client ID 101")


async def test_another_program_on_the_same_login_gets_error_9(env: Env) -> None:
    other = env.client_for()  # its own queue: like a second bot or script on the same login
    await other.invoice_pdf("acme", 501)
    with pytest.raises(ProviderUnavailable) as caught:
        await env.client.invoice_pdf("acme", 502)
    assert "one document request a minute" in caught.value.message
    assert "try again in a minute" in caught.value.message
    assert [s.error_code for s in env.sandbox.served] == [None, 9]
    await other.aclose()


async def test_the_queue_keeps_concurrent_requests_clear_of_error_9(env: Env) -> None:
    results = await asyncio.gather(
        env.client.create_invoice("acme", Decimal("10")),
        env.client.invoice_pdf("acme", 501),
        env.client.act_pdf("globex", num=8),
        env.client.invoice_pdf("id:102", 503),
    )

    assert len(results) == 4
    served = env.sandbox.served
    assert [s.error_code for s in served] == [None, None, None, None]
    assert all(b.at - a.at >= MINUTE for a, b in pairwise(served))


# --- transport failures: never retried ---------------------------------------------------------


async def test_a_lost_answer_to_create_is_outcome_unknown(env: Env) -> None:
    env.sandbox.control.drop = True
    with pytest.raises(OutcomeUnknown):
        await env.client.create_invoice("acme", Decimal("10"))
    assert len(env.sandbox.control.requests) == 1
    assert env.sandbox.next_invoice_id in env.sandbox.invoices  # SMSC did create it


async def test_a_lost_download_is_not_retried(env: Env) -> None:
    env.sandbox.control.drop = True
    with pytest.raises(ProviderUnavailable):
        await env.client.invoice_pdf("acme", 501)
    assert len(env.sandbox.control.requests) == 1


async def test_server_errors_are_not_retried(env: Env) -> None:
    env.sandbox.control.fail_status = 503
    with pytest.raises(ProviderUnavailable) as read:
        await env.client.invoice_pdf("acme", 501)
    with pytest.raises(OutcomeUnknown) as write:
        await env.client.create_invoice("acme", Decimal("10"))
    assert len(env.sandbox.control.requests) == 2
    assert read.value.status == write.value.status == 503
    assert "may or may not exist" in write.value.message


# --- odd bodies --------------------------------------------------------------------------------


def answering(response: httpx.Response) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: response)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (1, "SMSC rejected the request's parameters"),
        (5, "SMSC answered with error 5"),
    ],
)
async def test_other_error_codes(code: int, text: str) -> None:
    body = {"error": "something", "error_code": code}
    client = mock_client(answering(httpx.Response(200, json=body)))
    with pytest.raises(ProviderRejected) as caught:
        await client.invoice_pdf("acme", 1)
    assert caught.value.message.startswith(text)
    assert '(SMSC: "something")' in caught.value.message


async def test_an_error_body_with_an_http_error_status_is_still_read() -> None:
    body = {"error": "authorise error", "error_code": 2}
    client = mock_client(answering(httpx.Response(401, json=body)))
    with pytest.raises(ProviderAuthError):
        await client.invoice_pdf("acme", 1)


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (httpx.Response(200, content=b""), "the file is empty"),
        (httpx.Response(200, content=PDF[:-40]), "the PDF is truncated"),
        (
            httpx.Response(200, html="<html><body>Maintenance</body></html>"),
            "the file is not a PDF",
        ),
        (httpx.Response(200, json={"status": "ok"}), "the file is not a PDF"),
    ],
)
async def test_downloads_that_are_not_whole_pdfs_are_errors(
    response: httpx.Response, problem: str
) -> None:
    client = mock_client(answering(response))
    with pytest.raises(ProviderRejected) as caught:
        await client.invoice_pdf("acme", 501)
    assert caught.value.message.startswith("SMSC's answer for invoice 501 is not a usable PDF")
    assert problem in caught.value.message


def multipart(*parts: tuple[dict[str, str], bytes], boundary: str = "b0und4ry") -> httpx.Response:
    body = b""
    for headers, payload in parts:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body += f"--{boundary}\r\n{head}\r\n".encode() + payload + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    content_type = f"multipart/mixed; boundary={boundary}"
    return httpx.Response(200, content=body, headers={"Content-Type": content_type})


JSON = {"Content-Type": "application/json"}
PDF_PART = {"Content-Type": "application/pdf"}


async def test_create_reads_a_base64_pdf_part_and_a_decimal_sum() -> None:
    encoded = base64.encodebytes(PDF)
    response = multipart(
        (JSON, b'{"id": "77", "sum": 12.30}'),
        ({**PDF_PART, "Content-Transfer-Encoding": "base64"}, encoded),
    )
    created = await mock_client(answering(response)).create_invoice("acme", Decimal("12.3"))
    assert created.id == 77
    assert created.sum == Decimal("12.30") and str(created.sum) == "12.30"
    assert created.pdf == PDF


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (multipart((JSON, b'{"id": 78, "sum": 5}')), "the reply has no PDF part"),
        (
            multipart((JSON, b'{"id": 78, "sum": 5}'), (PDF_PART, PDF[:-30])),
            "the PDF is truncated",
        ),
        (multipart((JSON, b'{"id": 78, "sum": 5}'), (PDF_PART, b"")), "the file is empty"),
    ],
)
async def test_a_created_invoice_with_an_unusable_pdf_is_reported_not_uploaded(
    response: httpx.Response, problem: str
) -> None:
    created = await mock_client(answering(response)).create_invoice("acme", Decimal("5"))
    assert created.id == 78
    assert created.pdf is None
    assert created.pdf_problem is not None and problem in created.pdf_problem


async def test_a_reply_cut_off_inside_the_pdf_part_has_no_pdf() -> None:
    whole = multipart((JSON, b'{"id": 79, "sum": 5}'), (PDF_PART, PDF)).content
    cut = whole[: whole.index(b"%%EOF") + 5]  # the PDF looks whole, the multipart is not
    response = httpx.Response(
        200, content=cut, headers={"Content-Type": "multipart/mixed; boundary=b0und4ry"}
    )
    created = await mock_client(answering(response)).create_invoice("acme", Decimal("5"))
    assert created.pdf is None
    assert created.pdf_problem == "the reply was cut off before its end"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=PDF, headers={"Content-Type": "application/pdf"}),
        httpx.Response(200, html="<html>oops</html>"),
        multipart((PDF_PART, PDF)),
        multipart((JSON, b'{"sum": 5}'), (PDF_PART, PDF)),
    ],
)
async def test_a_create_reply_without_the_invoice_id_is_outcome_unknown(
    response: httpx.Response,
) -> None:
    with pytest.raises(OutcomeUnknown) as caught:
        await mock_client(answering(response)).create_invoice("acme", Decimal("5"))
    assert "may or may not exist" in caught.value.message


async def test_mock_requests_also_wait_their_turn() -> None:
    clock = FakeClock()
    client = mock_client(answering(httpx.Response(200, content=PDF)), clock)
    await client.invoice_pdf("acme", 1)
    await client.invoice_pdf("acme", 2)
    assert clock.sleeps and clock.sleeps[0] >= MINUTE
