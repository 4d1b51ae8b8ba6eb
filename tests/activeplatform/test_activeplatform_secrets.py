"""The ActivePlatform API token never shows: not in replies, approval text, buttons, errors,
log lines or settings output, whatever the provider answers."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from commands.activeplatform.commands import ActivePlatformSettings
from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.base import Reply
from commands.http import ProviderError
from commands.secrets import MASK, redact
from tests.support.activeplatform import attempt, context, open_client, typed

TOKEN = "ap-secret-token-7f3c9e1d"


def shown(reply: Reply | str) -> list[str]:
    if isinstance(reply, str):
        return [reply]
    parts = [reply.text, *reply.sections, *(f"{k} {v}" for k, v in reply.fields)]
    parts += [f"{b.label} {b.command}" for b in reply.buttons]
    if reply.table:
        parts += [" ".join(row) for row in reply.table.rows]
    if reply.proposal:
        parts.append(reply.proposal.command)
    return parts


async def test_the_token_appears_nowhere_people_or_logs_can_see(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = ActivePlatformSandbox(token=TOKEN)
    client = open_client(sandbox, token=TOKEN)
    texts: list[str] = []

    async def run(text: str) -> None:
        try:
            texts.extend(shown(await attempt(text, client, context())))
        except ProviderError as exc:
            texts.extend([str(exc), exc.message, repr(exc)])

    await run("accounts")
    await run("notify-closing 2026-10 accounts=2003001,2003002")
    sandbox.fail_accounts = {2003060: 422}
    await run("notify-closing 2026-10")  # partial failure: sections and a retry button
    await run("notify-closing 2026-10 accounts=999")  # 422
    await run("accounts reseller=3")  # 403
    sandbox.control.fail_status = 502  # retried reads, then unavailable
    await run("accounts")
    sandbox.control.fail_status = None
    sandbox.control.drop = True  # outcome unknown
    await run("notify-closing 2026-10 accounts=2003001")
    sandbox.control.drop = False
    sandbox.token = "rotated-elsewhere"  # 401 while we still send ours
    await run("accounts")

    notify, args = typed("notify-closing last-month reseller=1")
    assert notify.describe is not None and notify.unknown_hint is not None
    texts += [notify.describe(args), *shown(notify.unknown_hint(args)), str(args.preview())]
    settings = ActivePlatformSettings(base_url="https://ap.example", api_token=SecretStr(TOKEN))
    texts += [repr(settings), str(settings), settings.model_dump_json()]

    assert sum(1 for r in sandbox.control.requests if r.headers["x-api-token"] == TOKEN) > 10
    assert len(texts) > 20 and caplog.records
    for text in [*texts, *(r.getMessage() for r in caplog.records)]:
        assert TOKEN not in text
    assert redact(f"X-Api-Token: {TOKEN}") == f"X-Api-Token: {MASK}"
