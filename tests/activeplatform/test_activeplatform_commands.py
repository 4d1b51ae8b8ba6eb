"""`/activeplatform` handlers, approval text, the closing-reminder schedule and the provider
declaration, each run against the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from commands import grammar
from commands.activeplatform.client import ActivePlatformClient
from commands.activeplatform.commands import (
    COMMANDS,
    PROVIDER,
    ActivePlatformSettings,
    ClosingReminder,
    NotifyClosing,
    closing_reminder,
)
from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.base import Command, Reply
from commands.http import ProviderRejected
from commands.registry import PROVIDERS
from tests.support.activeplatform import attempt, context, open_client, typed


def notify_command() -> Command[NotifyClosing, ActivePlatformClient]:
    [command] = [c for c in COMMANDS if c.words == ("notify-closing",)]
    return command


def notify_args(text: str) -> NotifyClosing:
    _, args = typed(text)
    assert isinstance(args, NotifyClosing)
    return args


# --- accounts --------------------------------------------------------------------------------


async def test_accounts_shows_the_first_page_and_the_total(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox)
    reply = await attempt("accounts", client, context())

    assert isinstance(reply, Reply) and reply.table is not None
    assert reply.text == (
        "*230 accounts* of reseller 1: page 1 of 6 (accounts 1–40; add `page=<n>` for another)"
    )
    assert list(reply.table.columns) == ["ID", "Name", "E-mail", "Status"]
    expected = [[str(a.id), a.name, a.email, a.status] for a in sandbox.accounts["1"][:40]]
    assert [list(row) for row in reply.table.rows] == expected


async def test_accounts_of_another_reseller_filtered_by_email(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    target = sandbox.accounts["2"][2]
    reply = await attempt(f"accounts reseller=2 email={target.email}", client, context())

    assert isinstance(reply, Reply) and reply.table is not None
    assert reply.text == f"*1 account* of reseller 2 with e-mail {target.email}"
    assert [row[0] for row in reply.table.rows] == [str(target.id)]
    assert sandbox.control.requests[0].path == "/api/v3/resellers/2/accounts"


async def test_accounts_with_no_match_says_so(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox)
    reply = await attempt("accounts email=nobody@nowhere.example", client, context())

    assert isinstance(reply, Reply)
    assert reply.text == "No accounts of reseller 1 with e-mail nobody@nowhere.example."
    assert reply.table is None


async def test_accounts_of_a_reseller_out_of_reach_is_the_providers_refusal(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    with pytest.raises(ProviderRejected) as caught:
        await attempt("accounts reseller=3", client, context())
    assert caught.value.status == 403


# --- notify-closing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "start", "end", "label"),
    [
        ("2026-10", "2026-10-01", "2026-10-31", "October 2026"),
        ("last-month", "2026-10-01", "2026-10-31", "October 2026"),
        ("2026-02", "2026-02-01", "2026-02-28", "February 2026"),
        ("2026-09-15..2026-11-02", "2026-09-15", "2026-11-02", "2026-09-15..2026-11-02"),
    ],
)
async def test_notify_closing_sends_the_period_dates_as_of_the_requests_day(
    sandbox: ActivePlatformSandbox, period: str, start: str, end: str, label: str
) -> None:
    client = open_client(sandbox)
    reply = await attempt(f"notify-closing {period} accounts=2003002,2003001", client, context())

    assert isinstance(reply, Reply)
    [sent] = sandbox.notifications
    assert (sent.start_date.isoformat(), sent.end_date.isoformat()) == (start, end)
    assert sent.account_ids == (2003002, 2003001)
    assert reply.text == (
        f"Closing-document notifications sent for *{label}*: 2 accounts of reseller 1."
    )
    assert ("Period", f"{start}..{end}") in reply.fields


async def test_notify_closing_last_month_follows_the_clock_across_a_year(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    january = context(now=datetime(2027, 1, 5, tzinfo=UTC))
    await attempt("notify-closing last-month accounts=2003001", client, january)

    [sent] = sandbox.notifications
    assert (sent.start_date.isoformat(), sent.end_date.isoformat()) == ("2026-12-01", "2026-12-31")


async def test_notify_closing_all_of_a_small_reseller(sandbox: ActivePlatformSandbox) -> None:
    client = open_client(sandbox)
    reply = await attempt("notify-closing 2026-10 accounts=all reseller=2", client, context())

    assert isinstance(reply, Reply)
    assert [n.account_ids for n in sandbox.notifications] == [
        tuple(a.id for a in sandbox.accounts["2"])
    ]
    assert [r.method for r in sandbox.control.requests] == ["GET", "POST"]


async def test_notify_closing_for_a_reseller_without_accounts_is_refused_before_sending(
    sandbox: ActivePlatformSandbox,
) -> None:
    sandbox.accounts["2"] = []
    client = open_client(sandbox)
    reply = await attempt("notify-closing 2026-10 reseller=2", client, context())

    assert reply == "Reseller 2 has no accounts to notify."
    assert [r.method for r in sandbox.control.requests] == ["GET"]


def test_describe_shows_period_reseller_selection_and_request_shape() -> None:
    command = notify_command()
    listed = notify_args("notify-closing 2026-10 accounts=2003001,2003002,2003003 reseller=2")
    everyone = notify_args("notify-closing last-month")
    assert command.describe is not None

    text = command.describe(listed)
    assert "*2026-10* (2026-10-01..2026-10-31)" in text
    assert "Reseller: 2" in text
    assert "Accounts: 3 accounts" in text
    assert (
        "`POST /api/v3/resellers/2/notifications/external_invoices` "
        '`{"account_ids":[2003001,2003002,2003003],'
        '"start_date":"2026-10-01","end_date":"2026-10-31"}`'
    ) in text

    text = command.describe(everyone)
    assert "the month before the day it is approved" in text
    assert "Reseller: the default (ACTIVEPLATFORM_RESELLER_ID)" in text
    assert "every account of the reseller" in text
    assert "/api/v3/resellers/<ACTIVEPLATFORM_RESELLER_ID>/" in text


def test_describe_shortens_a_long_list_of_ids() -> None:
    ids = ",".join(str(2003001 + n) for n in range(60))
    args = notify_args(f"notify-closing 2026-10 accounts={ids}")
    describe = notify_command().describe
    assert describe is not None

    text = describe(args)
    assert "Accounts: 60 accounts" in text
    assert ",2003050,… 10 more]" in text
    assert "2003051" not in text


def test_unknown_outcome_hint_points_at_the_notifications_log() -> None:
    args = notify_args("notify-closing 2026-10 reseller=2")
    hint = notify_command().unknown_hint
    assert hint is not None

    reply = hint(args)
    assert "notifications log for 2026-10" in reply.text
    assert [b.command for b in reply.buttons] == ["/activeplatform accounts reseller=2"]


def test_notify_closing_is_an_approved_operator_write() -> None:
    command = notify_command()
    assert (command.role.name, command.approval, command.idempotent) == ("OPERATOR", True, False)
    help_text = grammar.help_text("activeplatform", ("notify-closing",), COMMANDS)
    assert (
        "`/activeplatform notify-closing <period> [accounts=<id,id,…|all>] [reseller=<number>]`"
        in help_text
    )


# --- closing-reminder schedule ---------------------------------------------------------------


async def test_closing_reminder_counts_last_months_accounts_and_proposes_the_command(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    kind = PROVIDER.schedule_kinds["closing-reminder"]
    args = kind.args.model_validate({})
    reply = await kind.run(client, args, context())

    assert reply.text == "Closing documents for October 2026: 230 accounts of reseller 1"
    assert reply.proposal is not None
    # Proposed as it will be sent: the month, the reseller and every account listed now.
    listed = ",".join(str(a.id) for a in sandbox.accounts["1"])
    assert reply.proposal.command == (
        f"/activeplatform notify-closing period=2026-10 accounts={listed} reseller=1"
    )
    assert (reply.proposal.approve_label, reply.proposal.reject_label) == (
        "Send notifications",
        "Skip",
    )
    assert reply.proposal.snooze_hours == 24
    assert sandbox.notifications == []  # a reminder only proposes

    # The proposal is a command the bot can parse and run as typed.
    command, proposed = typed(reply.proposal.command.removeprefix("/activeplatform "))
    assert command is notify_command()
    assert proposed.preview() == {"period": "2026-10", "accounts": listed, "reseller": "1"}


async def test_closing_reminder_with_listed_accounts_in_january(
    sandbox: ActivePlatformSandbox,
) -> None:
    client = open_client(sandbox)
    args = ClosingReminder.model_validate({"accounts": "2005001,2005002", "reseller": "2"})
    reply = await closing_reminder(client, args, context(now=datetime(2027, 1, 1, tzinfo=UTC)))

    assert reply.text == "Closing documents for December 2026: 2 accounts of reseller 2"
    assert reply.proposal is not None
    assert reply.proposal.command == (
        "/activeplatform notify-closing period=2026-12 accounts=2005001,2005002 reseller=2"
    )
    assert sandbox.control.requests == []  # listed accounts need no listing call


async def test_closing_reminder_with_no_accounts_proposes_nothing(
    sandbox: ActivePlatformSandbox,
) -> None:
    sandbox.accounts["2"] = []
    client = open_client(sandbox)
    reply = await closing_reminder(client, ClosingReminder(reseller="2"), context())

    assert reply.text == "Closing documents for October 2026: 0 accounts of reseller 2"
    assert reply.proposal is None


def test_closing_reminder_arguments_are_validated() -> None:
    with pytest.raises(ValidationError) as caught:
        ClosingReminder.model_validate({"accounts": "12,abc"})
    assert "not numbers: abc" in str(caught.value)


# --- provider --------------------------------------------------------------------------------


def test_the_provider_is_registered() -> None:
    assert PROVIDER in PROVIDERS
    assert {c.path for c in PROVIDER.commands} == {
        "activeplatform accounts",
        "activeplatform notify-closing",
    }


async def test_the_sandbox_provider_opens_and_checks() -> None:
    import httpx

    settings, sandbox = PROVIDER.sandbox()
    assert PROVIDER.configured(settings)
    client = PROVIDER.open_client(settings, httpx.ASGITransport(app=sandbox.app()))
    summary = await PROVIDER.check(client)

    assert summary == "reseller 1 reachable, 230 accounts"
    assert sandbox.control.requests[0].query == {"page[number]": "1", "page[size]": "1"}


def test_settings_read_the_contract_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVEPLATFORM_BASE_URL", "https://ap.example")
    monkeypatch.setenv("ACTIVEPLATFORM_API_TOKEN", "tok-123456")
    monkeypatch.setenv("ACTIVEPLATFORM_RESELLER_ID", "17")
    settings = ActivePlatformSettings()
    assert (settings.base_url, settings.reseller_id) == ("https://ap.example", "17")
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "tok-123456"
    assert (settings.chunk_size, settings.page_size) == (50, 50)  # 50 a page: as documented
    assert PROVIDER.configured(settings)

    monkeypatch.setenv("ACTIVEPLATFORM_CHUNK_SIZE", "20")
    monkeypatch.setenv("ACTIVEPLATFORM_PAGE_SIZE", "250")
    assert (ActivePlatformSettings().chunk_size, ActivePlatformSettings().page_size) == (20, 250)

    monkeypatch.setenv("ACTIVEPLATFORM_CHUNK_SIZE", "0")
    with pytest.raises(ValidationError) as caught:
        ActivePlatformSettings()
    assert "chunk_size" in str(caught.value)


def test_settings_without_a_token_are_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVEPLATFORM_API_TOKEN", raising=False)
    monkeypatch.setenv("ACTIVEPLATFORM_BASE_URL", "https://ap.example")
    assert not PROVIDER.configured(ActivePlatformSettings())
