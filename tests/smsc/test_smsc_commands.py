"""`/smsc` commands: declarations, handlers, approval text, settings and provider wiring."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from commands import grammar
from commands.base import Context, Role
from commands.http import ProviderAuthError
from commands.registry import PROVIDERS
from commands.secrets import MASK
from commands.smsc.client import DocumentNotFound
from commands.smsc.commands import (
    COMMANDS,
    PROVIDER,
    SLASH,
    CreateInvoice,
    SmscSettings,
)
from commands.smsc.pdf import pdf_problem
from commands.smsc.queue import MINUTE
from commands.smsc.sandbox import SANDBOX_PASSWORD
from tests.support.smsc import Env, make_env, mock_client, run_typed


def command(*words: str) -> Any:
    return next(c for c in COMMANDS if c.words == words)


# --- declarations ------------------------------------------------------------------------------


def test_declarations_match_the_spec() -> None:
    create = command("invoice", "create")
    assert (create.role, create.approval, create.idempotent) == (Role.OPERATOR, True, False)
    assert create.describe is not None and create.unknown_hint is not None
    for words in (("invoice", "get"), ("act", "get")):
        read = command(*words)
        assert (read.role, read.approval, read.idempotent) == (Role.VIEWER, False, True)
    assert {c.slash for c in COMMANDS} == {"smsc"}


def test_the_provider_is_registered() -> None:
    assert PROVIDER in PROVIDERS
    assert PROVIDER.name == "smsc"


def test_help_lists_every_command_with_its_arguments() -> None:
    text = grammar.help_text(SLASH, (), COMMANDS)
    assert "/smsc invoice create <user> <sum> [service=<text>]" in text
    assert "/smsc invoice get <user> <id>" in text
    assert "/smsc act get <user> [id] [num=<number>]" in text
    detail = grammar.help_text(SLASH, ("act", "get"), COMMANDS)
    assert "Example: `/smsc act get acme num=7`" in detail
    assert "• `id` (number, optional)" in detail


# --- handlers ----------------------------------------------------------------------------------


async def test_create_posts_a_summary_and_the_invoice_pdf(env: Env) -> None:
    reply = await run_typed(env, 'invoice create acme 1500 service="SMS package"')

    [invoice_id] = [i for i in env.sandbox.invoices if i > 503]
    assert reply.text == (
        f"SMSC invoice {invoice_id} created for sub-client acme: 1500.00, service “SMS package”."
    )
    [file] = reply.files
    assert file.filename == f"smsc-invoice-{invoice_id}.pdf"
    assert file.mime == "application/pdf"
    assert pdf_problem(file.content) is None
    assert file.content == env.sandbox.pdf("invoice", env.sandbox.invoices[invoice_id])


async def test_create_with_an_unusable_pdf_says_so_and_offers_the_download() -> None:
    body = (
        b'--xx\r\nContent-Type: application/json\r\n\r\n{"id": 640, "sum": 20}\r\n'
        b"--xx\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4 cut\r\n--xx--\r\n"
    )
    response = httpx.Response(
        200, content=body, headers={"Content-Type": "multipart/mixed; boundary=xx"}
    )
    env = make_env()
    env.client = mock_client(httpx.MockTransport(lambda request: response))

    reply = await run_typed(env, "invoice create id:101 20")

    assert not reply.files
    assert reply.text.startswith("SMSC invoice 640 created for sub-client ID 101: 20.00.")
    assert "the PDF is truncated" in reply.text
    assert [b.command for b in reply.buttons] == ["/smsc invoice get user=id:101 id=640"]


async def test_invoice_get_posts_the_pdf(env: Env) -> None:
    reply = await run_typed(env, "invoice get acme 502")
    [file] = reply.files
    assert file.filename == "smsc-invoice-502.pdf"
    assert file.content == env.sandbox.pdf("invoice", env.sandbox.invoices[502])
    assert reply.text.startswith("SMSC invoice 502 (sub-client acme), ")
    assert "\n" not in reply.text


async def test_act_get_by_id_and_by_number_names_the_file_after_what_was_asked(env: Env) -> None:
    by_id = await run_typed(env, "act get globex 702")
    by_num = await run_typed(env, "act get ID:102 num=8")
    assert [f.filename for f in by_id.files] == ["smsc-act-702.pdf"]
    assert [f.filename for f in by_num.files] == ["smsc-act-8.pdf"]
    assert by_id.files[0].content == by_num.files[0].content
    assert by_num.text.startswith("SMSC act number 8 (sub-client ID 102), ")
    assert env.sandbox.control.requests[1].query["user_id"] == "102"


async def test_a_waiting_requester_is_told_its_place_and_then_its_turn(env: Env) -> None:
    told: list[str] = []

    async def second_notes(text: str) -> None:
        told.append(text)

    second = Context(user_id="U2", channel_id="C1", notify=second_notes)
    get = command("invoice", "get")
    first_reply = await run_typed(env, "invoice get acme 501")
    env.clock.now += 20  # the second request comes 20 s after the first
    args = grammar.validate(get, {"user": "acme", "id": "502"})
    second_reply = await get.handler(env.client, args, second)

    assert first_reply.files and second_reply.files
    assert env.notes.texts == []
    assert told == [
        "SMSC takes one document request a minute for account sandbox, so yours is queued: "
        "place 1 (you are next), expected wait about 41 s.",
        "Your turn in the SMSC queue for account sandbox: sending the request now.",
    ]
    assert env.sandbox.served[1].at - env.sandbox.served[0].at >= MINUTE


async def test_a_missing_document_raises_for_the_bot_to_explain(env: Env) -> None:
    with pytest.raises(DocumentNotFound) as caught:
        await run_typed(env, "invoice get acme 4242")
    assert "SMSC has no invoice 4242 for sub-client acme" in str(caught.value)


# --- approval text -----------------------------------------------------------------------------


def test_describe_shows_user_sum_service_and_the_request_with_the_password_masked() -> None:
    create = command("invoice", "create")
    args = grammar.validate(create, {"user": "acme", "sum": "1500", "service": "SMS package"})
    text = create.describe(args)
    assert "sub-client acme" in text
    assert "1500.00" in text
    assert "SMS package" in text
    assert (
        f"`GET <SMSC_BASE_URL>/sys/documents.php?login=<SMSC_LOGIN>&psw={MASK}"
        "&add_account=1&user=acme&sum=1500.00&service=SMS%20package`"
    ) in text
    assert SANDBOX_PASSWORD not in text


def test_describe_with_a_sub_client_id_and_no_service() -> None:
    create = command("invoice", "create")
    args = grammar.validate(create, {"user": "id:101", "sum": "7.5"})
    text = create.describe(args)
    assert "sub-client ID 101" in text and "no service name" in text
    assert "&user_id=101&sum=7.50`" in text
    assert "&user=" not in text


def test_unknown_outcome_hint_says_what_to_check() -> None:
    create = command("invoice", "create")
    args = CreateInvoice(user="globex", sum=Decimal("99.90"))
    hint = create.unknown_hint(args)
    assert "sub-client globex" in hint.text and "99.90" in hint.text
    assert "Check the sub-client's invoices in the SMSC account" in hint.text


# --- settings and provider ---------------------------------------------------------------------


def test_settings_read_the_contract_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSC_LOGIN", "billing")
    monkeypatch.setenv("SMSC_PASSWORD", "s3cret-pass")
    monkeypatch.setenv("SMSC_BASE_URL", "https://smsc.kz")
    settings = SmscSettings()
    assert settings.login == "billing"
    assert settings.password is not None
    assert settings.password.get_secret_value() == "s3cret-pass"
    assert "s3cret-pass" not in repr(settings)
    assert settings.base_url == "https://smsc.kz"
    assert PROVIDER.configured(settings)


def test_settings_default_and_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SMSC_LOGIN", "SMSC_PASSWORD", "SMSC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = SmscSettings()
    assert settings.base_url == "https://smsc.ru"
    assert not PROVIDER.configured(settings)
    monkeypatch.setenv("SMSC_LOGIN", "billing")
    assert not PROVIDER.configured(SmscSettings())


async def test_check_against_the_sandbox_proves_the_credentials() -> None:
    settings, sandbox = PROVIDER.sandbox()
    client = PROVIDER.open_client(settings, httpx.ASGITransport(app=sandbox.app()))
    line = await PROVIDER.check(client)
    assert line.startswith("login sandbox accepted")
    [request] = sandbox.control.requests
    assert request.query["get_account"] == "1"
    await client.aclose()


async def test_check_with_a_wrong_password_fails() -> None:
    settings, sandbox = PROVIDER.sandbox()
    settings = settings.model_copy(update={"password": SecretStr("nope-nope")})
    client = PROVIDER.open_client(settings, httpx.ASGITransport(app=sandbox.app()))
    with pytest.raises(ProviderAuthError, match="wrong login/password"):
        await PROVIDER.check(client)
    await client.aclose()
