"""The SMSC sandbox behaves as the provider's documents say, and its PDFs are real PDFs."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import httpx
import pytest

from commands.smsc.pdf import pdf_problem, render_pdf
from commands.smsc.sandbox import SANDBOX_LOGIN, SANDBOX_PASSWORD, SmscSandbox
from tests.support.smsc import FakeClock

AUTH = {"login": SANDBOX_LOGIN, "psw": SANDBOX_PASSWORD}


@pytest.fixture
async def http(sandbox: SmscSandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sandbox.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://smsc.sandbox") as client:
        yield client


async def get(http: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await http.get("/sys/documents.php", params=params)


def error_code(response: httpx.Response) -> Any:
    assert response.status_code == 200  # SMSC reports errors in the body
    return response.json()["error_code"]


# --- PDFs --------------------------------------------------------------------------------------


def test_rendered_pdf_has_a_correct_cross_reference_table() -> None:
    pdf = render_pdf(["Sum: 1500.00", "Service: (SMS) \\ package"], title="SMSC invoice No. 501")
    assert pdf_problem(pdf) is None
    startxref = int(re.findall(rb"startxref\n(\d+)\n%%EOF\n$", pdf)[0])
    assert pdf[startxref:].startswith(b"xref\n0 7\n")
    offsets = re.findall(rb"(\d{10}) 00000 n \n", pdf)
    assert len(offsets) == 6
    for number, offset in enumerate(offsets, start=1):
        assert pdf[int(offset) :].startswith(b"%d 0 obj\n" % number)
    stream = re.search(rb"/Length (\d+) >>\nstream\n", pdf)
    assert stream is not None
    end = stream.end() + int(stream.group(1))
    assert pdf[end:].startswith(b"\nendstream")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_poppler_reads_the_number_and_sum(sandbox: SmscSandbox, tmp_path: Any) -> None:
    path = tmp_path / "act.pdf"
    path.write_bytes(sandbox.pdf("act", sandbox.acts[701]))
    text = subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert "SMSC act No. 7 (ID 701)" in text
    assert "Sum: 1820.50" in text
    assert "Sub-client: acme (ID 101)" in text


# --- documented behaviour ----------------------------------------------------------------------


async def test_invoice_download_is_the_pdf_itself(http: httpx.AsyncClient) -> None:
    response = await get(http, **AUTH, get_account="1", user="acme", id="501")
    assert response.headers["content-type"] == "application/pdf"
    assert pdf_problem(response.content) is None


async def test_create_answers_multipart_json_then_pdf(
    http: httpx.AsyncClient, sandbox: SmscSandbox
) -> None:
    response = await get(http, **AUTH, add_account="1", user_id="102", sum="250.5")
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + response.content)
    assert isinstance(message, EmailMessage)
    first, second = message.iter_parts()
    assert first.get_content_type() == "application/json"
    assert second.get_content_type() == "application/pdf"
    summary = first.get_payload(decode=True)
    assert isinstance(summary, bytes)
    assert re.fullmatch(rb'\{"id": (\d+), "sum": 250.5\}', summary)
    new_id = int(summary.split(b",")[0].split(b":")[1])
    assert sandbox.invoices[new_id].client_id == 102
    pdf = second.get_payload(decode=True)
    assert isinstance(pdf, bytes)
    assert pdf_problem(pdf) is None
    assert b"250.50" in pdf


async def test_post_is_accepted_as_well(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/sys/documents.php", data={**AUTH, "get_act": "1", "user": "acme", "num": "7"}
    )
    assert response.headers["content-type"] == "application/pdf"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        (
            {
                "login": SANDBOX_LOGIN,
                "psw": "wrong",
                "get_account": "1",
                "user": "acme",
                "id": "501",
            },
            2,
        ),
        ({"get_account": "1", "user": "acme", "id": "501"}, 2),
        ({**AUTH, "get_account": "1", "user": "acme", "user_id": "101", "id": "501"}, 1),
        ({**AUTH, "get_account": "1", "id": "501"}, 1),
        ({**AUTH, "get_account": "1", "get_act": "1", "user": "acme", "id": "501"}, 1),
        ({**AUTH, "get_act": "1", "user": "acme", "id": "701", "num": "7"}, 1),
        ({**AUTH, "get_act": "1", "user": "acme"}, 1),
        ({**AUTH, "add_account": "1", "user": "acme", "sum": "-3"}, 1),
        ({**AUTH, "add_account": "1", "user": "acme", "sum": "1.005"}, 1),
        ({**AUTH, "get_account": "1", "user": "initech", "id": "501"}, 6),
        ({**AUTH, "get_account": "1", "user_id": "999", "id": "501"}, 6),
        ({**AUTH, "get_account": "1", "user": "globex", "id": "501"}, 7),
        ({**AUTH, "get_act": "1", "user": "acme", "num": "8"}, 7),
    ],
)
async def test_errors(http: httpx.AsyncClient, params: dict[str, str], code: int) -> None:
    assert error_code(await get(http, **params)) == code


async def test_blocked_ip_comes_before_everything(
    http: httpx.AsyncClient, sandbox: SmscSandbox
) -> None:
    sandbox.ip_blocked = True
    assert error_code(await get(http, **AUTH, get_account="1", user="acme", id="501")) == 4


async def test_one_document_request_a_minute_per_login(
    http: httpx.AsyncClient, sandbox: SmscSandbox, clock: FakeClock
) -> None:
    ask = {**AUTH, "get_account": "1", "user": "acme", "id": "501"}
    assert (await get(http, **ask)).status_code == 200
    clock.now += 59
    assert error_code(await get(http, **ask)) == 9
    # Refused and unauthenticated requests do not move the minute.
    assert error_code(await get(http, **{**ask, "psw": "wrong"})) == 2
    clock.now += 1
    response = await get(http, **ask)
    assert response.headers["content-type"] == "application/pdf"
    assert [s.error_code for s in sandbox.served] == [None, 9, None]


async def test_a_missing_document_still_uses_the_minute(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert error_code(await get(http, **AUTH, get_account="1", user="acme", id="9")) == 7
    clock.now += 30
    assert error_code(await get(http, **AUTH, get_account="1", user="acme", id="501")) == 9
