"""The token, google_captcha and login URLs never reach reply text (except the private
login-url reply itself), audit notes, file names, approval texts, exception texts or logs."""

from __future__ import annotations

import logging

import pytest

from commands.base import CommandError
from commands.http import ProviderError
from commands.voipcloud.budget import RateLimit
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.sandbox import SANDBOX_GOOGLE_CAPTCHA, SANDBOX_TOKEN, VoipcloudSandbox
from tests.support.voipcloud import (
    Clock,
    open_client,
    parse,
    reply_texts,
    run,
)

TYPED = [
    "balance 10023",
    "balance 10024 2026-10-01 2026-11-17",
    "partner-balance",
    "move-funds 10023 25.00 top-up",
    "move-funds 10024 -1 correction",
    "register first_name=Ana last_name=Lima email=ana@example.com phone=+351912345678",
    "confirm-email 10025",
    "reset-password 10025",
    "login-url 10025",
]


async def test_replies_approvals_hints_and_logs_carry_no_secret(
    sandbox: VoipcloudSandbox, client: VoipcloudClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = await run(client, "login-url 10023")
    second = await run(client, "login-url 10024")
    urls = [word for r in (first, second) for word in r.text.split() if "://" in word]
    assert len(urls) == 2

    seen: list[str] = []
    for login in (first, second):
        # The URL is in the private text, and nowhere else in the reply.
        seen += [t for t in reply_texts(login) if t != login.text]
    for text in TYPED:
        reply = await run(client, text)
        if text.startswith("login-url"):
            urls += [w for w in reply.text.split() if "://" in w]
            seen += [t for t in reply_texts(reply) if t != reply.text]
        else:
            seen += reply_texts(reply)
        command, args = parse(text)
        seen.append(" ".join(f"{k}={v}" for k, v in args.preview().items()))  # audit arguments
        if command.describe is not None:
            seen.append(command.describe(args))
        if command.unknown_hint is not None:
            seen += reply_texts(command.unknown_hint(args))
    seen += [record.getMessage() for record in caplog.records]

    secrets = [SANDBOX_TOKEN, SANDBOX_GOOGLE_CAPTCHA, *urls, *sandbox.login_keys]
    assert len(sandbox.login_keys) == 3
    assert any("/move-funds" in line for line in seen)  # the request log lines were scanned
    assert [(s, t) for t in seen for s in secrets if s in t] == []


async def test_exception_texts_carry_no_secret(sandbox: VoipcloudSandbox) -> None:
    client = open_client(sandbox)
    attempts = [
        ("ip refused", "balance 10023"),
        ("captcha refused", "confirm-email 10025"),
        ("portal refusal", "move-funds 10024 -500 too much"),
        ("lost answer", "move-funds 10023 1 top-up"),
        ("lost answer", "login-url 10023"),
        ("server error", "register first_name=A last_name=B email=x@y.co phone=+3519123456"),
    ]
    texts: list[str] = []
    for kind, text in attempts:
        sandbox.control.reset()
        sandbox.ip_allowed = kind != "ip refused"
        sandbox.google_captcha = (
            "other-captcha" if kind == "captcha refused" else SANDBOX_GOOGLE_CAPTCHA
        )
        sandbox.control.drop = kind == "lost answer"
        sandbox.control.fail_status = 503 if kind == "server error" else None
        with pytest.raises(ProviderError) as caught:
            await run(client, text)
        texts += [str(caught.value), caught.value.message, repr(caught.value)]
    assert len(sandbox.login_keys) == 1  # the lost login URL was issued, then lost
    secrets = [SANDBOX_TOKEN, SANDBOX_GOOGLE_CAPTCHA, "other-captcha", *sandbox.login_keys]
    assert [(s, t) for t in texts for s in secrets if s in t] == []


async def test_budget_message_carries_no_secret(sandbox: VoipcloudSandbox) -> None:
    client = open_client(sandbox, rate_limit=RateLimit.parse("1/1m"), clock=Clock())
    await run(client, "confirm-email 10025")
    with pytest.raises(CommandError) as caught:
        await run(client, "reset-password 10025")
    assert caught.value.message.startswith("The VoIPcloud request budget (1 per 1 min) is spent")
    assert SANDBOX_TOKEN not in str(caught.value)
    assert SANDBOX_GOOGLE_CAPTCHA not in str(caught.value)
    assert len(sandbox.control.requests) == 1
