"""`billing-bot check`: one line per check (Slack, database, providers), exit 1 on any failure,
every bad variable at once (exit 2), no secret printed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from commands.invoicexpress.sandbox import SANDBOX_API_KEY, InvoiceXpressSandbox
from tests.support.server import serve_asgi
from tests.support.slack_api import (
    BOT_TOKEN,
    SlackApiDouble,
    serve_slack_double,
)

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0BILLING1"
SIGNING_SECRET = "check-signing-secret"


async def check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "check"],
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def slack_env(slack: SlackApiDouble, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "SLACK_API_URL": slack.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "BILLING_CHANNEL": CHANNEL,
        **extra,
    }


def line(result: subprocess.CompletedProcess[str], name: str) -> str:
    [found] = [text for text in result.stdout.splitlines() if text.startswith(f"{name}: ")]
    return found


async def test_check_reports_slack_the_database_and_each_provider(tmp_path: Path) -> None:
    sandbox = InvoiceXpressSandbox()
    async with (
        serve_slack_double() as slack,
        serve_asgi(sandbox.app(), thread=True) as url,
    ):
        slack.channel_names[CHANNEL] = "billing"
        base = slack_env(slack, tmp_path, INVOICEXPRESS_ACCOUNT="acme", INVOICEXPRESS_BASE_URL=url)
        good = await check({**base, "INVOICEXPRESS_API_KEY": SANDBOX_API_KEY}, tmp_path)
        bad = await check({**base, "INVOICEXPRESS_API_KEY": "wrong-key-123456"}, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.splitlines()[:5] == [
        "slack mode: ok — serve (SLACK_SIGNING_SECRET set)",
        "slack token: ok — bot @billing-bot (U0BILLBOT1) in workspace Billing Team (T0BILLING1)",
        "slack scopes: ok — 9 scopes manifest.yml asks for granted",
        "slack channel: ok — #billing (C0BILLING1), the bot is a member",
        "database: ok (sqlite)",
    ]
    assert line(good, "InvoiceXpress").startswith("InvoiceXpress: ok — ")
    assert "SMSC: not configured (skipped)" in good.stdout.splitlines()
    assert good.stderr == ""  # quiet: no library chatter
    assert bad.returncode == 1
    assert line(bad, "InvoiceXpress").startswith("InvoiceXpress: FAILED — API key missing or wrong")
    assert "wrong-key-123456" not in bad.stdout + bad.stderr
    assert SANDBOX_API_KEY not in good.stdout + good.stderr
    assert SIGNING_SECRET not in good.stdout + bad.stdout + good.stderr + bad.stderr


async def test_a_token_slack_refuses_fails_the_check(tmp_path: Path) -> None:
    async with serve_slack_double() as slack:
        env = slack_env(slack, tmp_path, SLACK_BOT_TOKEN="xoxb-revoked-token-0000")
        result = await check(env, tmp_path)
        asked = [call.method for call in slack.calls]
    assert result.returncode == 1
    assert line(result, "slack token") == (
        "slack token: FAILED — Slack refused the bot token (invalid_auth)"
    )
    assert asked == ["auth.test"]  # nothing else is asked with a refused token
    assert "xoxb-revoked-token-0000" not in result.stdout + result.stderr
    assert "database: ok (sqlite)" in result.stdout.splitlines()


async def test_missing_scopes_are_named(tmp_path: Path) -> None:
    async with serve_slack_double() as slack:
        slack.scopes = {"commands", "chat:write", "files:write"}
        result = await check(slack_env(slack, tmp_path), tmp_path)
    assert result.returncode == 1
    assert line(result, "slack token").startswith("slack token: ok — bot @billing-bot")
    assert line(result, "slack scopes") == (
        "slack scopes: FAILED — the token lacks channels:history, channels:read, groups:history, "
        "groups:read, im:write, usergroups:read: add them as in manifest.yml (OAuth & "
        "Permissions) and reinstall the app"
    )
    assert line(result, "slack channel") == (
        "slack channel: FAILED — Slack refused to describe BILLING_CHANNEL C0BILLING1 "
        "(missing_scope)"
    )


async def test_a_channel_the_bot_is_not_in_or_that_does_not_exist_fails(tmp_path: Path) -> None:
    async with serve_slack_double() as slack:
        slack.not_in_channel.add(CHANNEL)
        outside = await check(slack_env(slack, tmp_path), tmp_path)
        slack.missing_channels.add("C0GONE0001")
        missing = await check(slack_env(slack, tmp_path, BILLING_CHANNEL="C0GONE0001"), tmp_path)
    assert outside.returncode == 1
    assert line(outside, "slack channel") == (
        "slack channel: FAILED — the bot is not a member of #c0billing1 (C0BILLING1): "
        "invite it with /invite @billing-bot"
    )
    assert missing.returncode == 1
    assert line(missing, "slack channel") == (
        "slack channel: FAILED — BILLING_CHANNEL C0GONE0001 does not exist or the bot cannot "
        "see it (channel_not_found)"
    )


async def test_no_slack_settings_fail_the_check_without_calling_slack(tmp_path: Path) -> None:
    result = await check({"DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}"}, tmp_path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == [
        "slack mode: FAILED — set SLACK_SIGNING_SECRET for `serve` or SLACK_APP_TOKEN for `socket`",
        "slack token: FAILED — SLACK_BOT_TOKEN is not set",
    ]
    assert "database: ok (sqlite)" in result.stdout.splitlines()


async def test_a_missing_channel_setting_is_skipped_not_failed(tmp_path: Path) -> None:
    async with serve_slack_double() as slack:
        env = slack_env(slack, tmp_path)
        del env["BILLING_CHANNEL"]
        result = await check(env, tmp_path)
    assert result.returncode == 0, result.stdout
    assert line(result, "slack channel") == (
        "slack channel: skipped — BILLING_CHANNEL is not set: schedules are refused"
    )


async def test_every_bad_variable_is_reported_at_once(tmp_path: Path) -> None:
    result = await check(
        {
            "APPROVAL_TTL_HOURS": "-3",
            "BILLING_ADMINS": "alice",
            "LOG_FORMAT": "xml",
            "VOIPCLOUD_RATE_LIMIT": "lots",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "configuration error: BILLING_ADMINS: alice is not a Slack user ID (U…/W…) or "
        "user-group ID (S…)",
        "configuration error: APPROVAL_TTL_HOURS: Input should be greater than 0",
        "configuration error: LOG_FORMAT: Input should be 'text' or 'json'",
        "configuration error: VOIPCLOUD_RATE_LIMIT: 'lots' is not a rate limit: use "
        "requests/window such as 100/15m, 10/1m or 5/30s, or off",
    ]


async def test_one_bad_variable_is_one_line(tmp_path: Path) -> None:
    result = await check({"APPROVAL_TTL_HOURS": "-3"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "configuration error: APPROVAL_TTL_HOURS: Input should be greater than 0"
    )
