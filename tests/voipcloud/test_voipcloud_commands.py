"""Handlers, called as the bot calls them: typed text → Args → handler(client, args, ctx)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commands import grammar
from commands.base import CommandError, Reply, Role
from commands.http import OutcomeUnknown, ProviderRejected
from commands.secrets import MASK, redact
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.commands import COMMANDS, PROVIDER, REGISTER_FORM, MoveFundsArgs
from commands.voipcloud.models import STATEMENT_LINES
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.voipcloud import command, context, parse, run


def table_of(reply: Reply) -> dict[str, str]:
    assert reply.table is not None
    return {row[0]: row[1] for row in reply.table.rows}


async def test_balance_defaults_to_this_month_so_far(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    reply = await run(client, "balance 10023")
    (sent,) = sandbox.control.requests
    assert (sent.query["from_date"], sent.query["to_date"]) == ("2026-11-01", "2026-11-17")
    assert reply.text.startswith("*Customer 10023*, 2026-11-01..2026-11-17")


async def test_balance_default_period_is_in_the_team_time_zone(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    # 20:00 UTC on 30 November is already 1 December in Sydney.
    ctx = context(datetime(2026, 11, 30, 20, 0, tzinfo=UTC), tz="Australia/Sydney")
    await run(client, "balance 10023", ctx)
    (sent,) = sandbox.control.requests
    assert (sent.query["from_date"], sent.query["to_date"]) == ("2026-12-01", "2026-12-01")


async def test_balance_table_shows_every_figure_as_sent(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    reply = await run(client, "balance 10023 2026-11-01 2026-11-30")
    assert reply.table is not None
    assert [row[0] for row in reply.table.rows] == [label for _, label in STATEMENT_LINES]
    assert reply.table.align_right == frozenset({1})
    statement = sandbox.customers["10023"].ledger.statement(date(2026, 11, 1), date(2026, 11, 30))
    shown = table_of(reply)
    for name, label in STATEMENT_LINES:
        assert Decimal(shown[label]) == statement[name]
    # The precision of the article's example survives the trip, nothing is in exponent form,
    # and the column lines up: every figure padded with zeros to the most decimals sent.
    assert shown["Opening balance"] == "245.71293"
    assert shown["Payments"] == "57.00000"
    assert shown["Call charges"] == "48.12500"
    assert {len(amount.partition(".")[2]) for amount in shown.values()} == {5}
    assert "November 2026" in reply.text and "closing balance *242.08793*" in reply.text


async def test_balance_from_date_alone_runs_to_today(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    await run(client, "balance 10023 2026-10-15")
    (sent,) = sandbox.control.requests
    assert (sent.query["from_date"], sent.query["to_date"]) == ("2026-10-15", "2026-11-17")


async def test_balance_from_date_after_today_is_refused_before_any_call(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    with pytest.raises(CommandError, match="from_date 2026-11-20 is after today"):
        await run(client, "balance 10023 2026-11-20")
    assert sandbox.control.requests == []


async def test_unknown_customer_is_the_portal_sentence(client: VoipcloudClient) -> None:
    with pytest.raises(ProviderRejected, match="Customer not found"):
        await run(client, "balance 55555")


async def test_partner_balance(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    reply = await run(client, "partner-balance 2026-10-01 2026-10-31")
    (sent,) = sandbox.control.requests
    assert sent.query == {"from_date": "2026-10-01", "to_date": "2026-10-31"}
    assert reply.text.startswith("*Partner account*, October 2026")
    closing = sandbox.partner.balance(before=date(2026, 11, 1))
    assert Decimal(table_of(reply)["Closing balance"]) == closing


async def test_move_funds_partner_to_customer(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    customer_before = sandbox.customers["10023"].ledger.balance()
    partner_before = sandbox.partner.balance()
    reply = await run(client, 'move-funds 10023 50.00 "March top-up" for roaming')
    assert reply.text == "Funds moved, partner → customer 10023: 50.00."
    fields = dict(reply.fields)
    assert Decimal(fields["Customer balance"]) == customer_before + Decimal("50.00")
    assert fields["Credit limit"] == "-55"
    assert fields["Description"] == "March top-up for roaming"
    assert sandbox.partner.balance() == partner_before - Decimal("50.00")


async def test_move_funds_customer_to_partner(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    before = sandbox.customers["10023"].ledger.balance()
    reply = await run(client, "move-funds 10023 -12.5 refund")
    assert reply.text == "Funds moved, customer 10023 → partner: 12.50."
    assert Decimal(dict(reply.fields)["Customer balance"]) == before - Decimal("12.5")


async def test_move_funds_beyond_the_credit_limit_is_the_portal_sentence(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    with pytest.raises(ProviderRejected, match="Insufficient customer balance"):
        await run(client, "move-funds 10024 -100 take it all")
    assert sandbox.customers["10024"].ledger.balance() == Decimal("-13.72328")


def test_move_funds_declaration() -> None:
    cmd = command("move-funds")
    assert (cmd.role, cmd.approval, cmd.idempotent) == (Role.OPERATOR, True, False)
    assert cmd.describe is not None and cmd.unknown_hint is not None


def describe(text: str) -> str:
    cmd, args = parse(text)
    assert cmd.describe is not None
    return str(cmd.describe(args))


def test_describe_states_the_direction_in_words() -> None:
    positive = describe("move-funds 10023 50 top-up")
    negative = describe("move-funds 10023 -50.00 refund")
    assert positive.splitlines()[0] == "Move funds partner → customer 10023: 50.00"
    assert negative.splitlines()[0] == "Move funds customer 10023 → partner: 50.00"
    assert "amount=-50.00" in negative and "description=refund" in negative


async def test_lost_answer_ends_as_outcome_unknown_with_a_balance_button(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    sandbox.control.drop = True
    with pytest.raises(OutcomeUnknown):
        await run(client, "move-funds 10024 20 top-up")
    assert [r.method for r in sandbox.control.requests] == ["PUT"]
    cmd, args = parse("move-funds 10024 20 top-up")
    assert cmd.unknown_hint is not None
    hint: Reply = cmd.unknown_hint(args)
    assert [(b.label, b.command) for b in hint.buttons] == [
        ("Check balance", "/voipcloud balance account=10024")
    ]
    assert "partner → customer 10024: 20.00" in hint.text


async def test_register_typed_form(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    reply = await run(
        client,
        "register first_name=Ana last_name=Lima email=ana@example.com "
        'phone="+351 912 345 678" company="Lima Lda"',
    )
    (number,) = [n for n in sandbox.customers if n not in {"10023", "10024", "10025"}]
    stored = sandbox.customers[number]
    assert (stored.first_name, stored.last_name, stored.company) == ("Ana", "Lima", "Lima Lda")
    assert stored.phone == "+351912345678"  # spaces dropped before sending
    assert f"registered as account *{number}*" in reply.text
    assert ("Account number", number) in reply.fields
    assert f"/voipcloud confirm-email account={number}" in [b.command for b in reply.buttons]


async def test_register_modal_values_take_the_same_path(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    cmd = command("register")
    assert cmd.form is REGISTER_FORM
    values = {
        "first_name": "Ana",
        "last_name": "Lima",
        "email": "ana@example.com",
        "phone": "+351912345678",
        "company": "",
    }
    assert {f.name for f in REGISTER_FORM.fields} == set(values)
    assert set(values) <= set(cmd.args.model_fields)
    args = grammar.validate(cmd, values)
    reply = await cmd.handler(client, args, context())
    assert "Ana Lima" in reply.text
    assert "company" not in sandbox.control.requests[0].body.decode()


async def test_confirm_email(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    assert not sandbox.customers["10025"].email_confirmed
    reply = await run(client, "confirm-email 10025")
    assert sandbox.customers["10025"].email_confirmed
    assert reply.text == "E-mail of customer 10025 confirmed."


async def test_reset_password(sandbox: VoipcloudSandbox, client: VoipcloudClient) -> None:
    reply = await run(client, "reset-password 10024")
    assert sandbox.customers["10024"].password_resets == 1
    assert reply.text == "Password reset for customer 10024."
    assert reply.sections  # the portal's own words about the e-mail


async def test_login_url_goes_only_to_the_requester(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    reply = await run(client, "login-url 10023")
    (key,) = sandbox.login_keys
    assert reply.private
    assert reply.audit_note == "login URL issued for customer 10023"
    assert key in reply.text
    url = next(word for word in reply.text.split() if "://" in word)
    assert redact(url) == MASK  # masked everywhere else: logs, audit, errors
    # The URL opens the customer's portal once.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app())) as browser:
        assert (await browser.get(url)).status_code == 200
        assert (await browser.get(url)).status_code == 410


def test_roles_and_write_flags() -> None:
    declared: dict[str, tuple[Role, bool]] = {c.path: (c.role, c.idempotent) for c in COMMANDS}
    assert declared == {
        "voipcloud balance": (Role.VIEWER, True),
        "voipcloud partner-balance": (Role.VIEWER, True),
        "voipcloud move-funds": (Role.OPERATOR, False),
        "voipcloud register": (Role.OPERATOR, False),
        "voipcloud confirm-email": (Role.OPERATOR, True),
        "voipcloud login-url": (Role.OPERATOR, False),
        "voipcloud reset-password": (Role.OPERATOR, False),
        "billing report balances": (Role.VIEWER, True),
    }
    assert [c for c in COMMANDS if c.approval] == [command("move-funds")]
    assert all(c.unknown_hint is not None for c in COMMANDS if not c.idempotent)


def test_help_states_the_description_limit() -> None:
    text = grammar.help_text("voipcloud", ("move-funds",), COMMANDS)
    assert "1–255 characters" in text
    assert MoveFundsArgs.rest == "description"


async def test_provider_sandbox_and_check() -> None:
    settings, sandbox = PROVIDER.sandbox()
    assert PROVIDER.configured(settings)
    client: Any = PROVIDER.open_client(settings, httpx.ASGITransport(app=sandbox.app()))
    try:
        line = await PROVIDER.check(client)
        reply = await run(
            client, "register first_name=A last_name=B email=a@b.co phone=+4411122233"
        )
    finally:
        await client.aclose()
    assert line.startswith("partner closing balance ")
    period = sandbox.control.requests[0].query
    assert (period["from_date"][:8], period["from_date"][8:]) == (period["to_date"][:8], "01")
    assert "registered" in reply.text  # the sandbox's captcha matches its settings


def test_registry_lists_voipcloud() -> None:
    from commands.registry import PROVIDERS

    assert PROVIDER in PROVIDERS
