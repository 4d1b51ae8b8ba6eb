"""No secret reaches Slack, the logs or the database, whatever the commands run into."""

from __future__ import annotations

import logging

import pytest

from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from commands.smsc.sandbox import SmscSandbox
from tests.support.e2e import every_row, recorded_text, running_bot
from tests.support.slack_api import SlackApiDouble

SIGNING_SECRET = "e2e-signing-a8c3f1d2"
BOT_TOKEN = "xoxb-e2e-5d1f0c7a9b3e"
INVOICEXPRESS_KEY = "ix-e2e-key-4b7e2a91"
SMSC_PASSWORD = "smsc-e2e-pw-c05d8e3f"
AT_PASSWORD = "At-e2e-typed-9q2w"
METRICS_TOKEN = "metrics-e2e-token-31f7a0c2"


async def test_secrets_stay_out_of_slack_logs_and_database(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack = SlackApiDouble(bot_token=BOT_TOKEN)
    invoicexpress = InvoiceXpressSandbox(api_key=INVOICEXPRESS_KEY)
    smsc = SmscSandbox(password=SMSC_PASSWORD)
    async with running_bot(
        database_url,
        slack=slack,
        invoicexpress=invoicexpress,
        smsc=smsc,
        secret=SIGNING_SECRET,
        variables={"METRICS_TOKEN": METRICS_TOKEN},
    ) as bot:
        listed = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        missing = await bot.slash("/invoicexpress", "sequence 999", user="U0VIEWER")
        invalid = await bot.slash("/invoicexpress", "sequence abc", user="U0VIEWER")
        misspelt = await bot.slash("/invoicexpress", "sequnces", user="U0VIEWER")
        pdf = await bot.slash("/smsc", "invoice get acme 501", user="U0VIEWER")
        typed = await bot.slash(
            "/invoicexpress",
            f"at-communication subuser=123456789/3 password={AT_PASSWORD} communication_type=auto",
            user="U0ADMIN",
        )
        await bot.private(missing.respond, containing="failed")
        await bot.private(invalid.respond)
        await bot.private(misspelt.respond)
        await bot.slack.wait_for("files.completeUploadExternal")

        invoicexpress.control.fail_status = 401
        refused = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        await bot.private(refused.respond, containing="failed")
        invoicexpress.control.fail_status = None

        await bot.slash("/invoicexpress", "sequence create 2029", user="U1")
        cards = await bot.slack.wait_for("chat.postMessage", count=4)
        card = next(c for c in cards if "Approval needed" in c.params["text"])
        approved = await bot.click(bot.message(card.response["ts"]), "Approve", user="U2")
        await bot.private(approved.respond, containing="done")
        bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        scraped = await bot.http.get(f"{bot.url}/metrics", headers=bearer)

    answers = [listed, missing, invalid, misspelt, pdf, typed, refused, approved]
    assert [sent.answer.status_code for sent in answers] == [200] * len(answers)
    assert scraped.status_code == 200  # the metrics token was in use too
    assert invoicexpress.at_settings is not None  # the typed password was sent
    secrets = [SIGNING_SECRET, BOT_TOKEN, INVOICEXPRESS_KEY, SMSC_PASSWORD, AT_PASSWORD]
    secrets.append(METRICS_TOKEN)
    slack_text = recorded_text(bot.slack)
    log_text = caplog.text
    rows = await every_row(database_url)
    # The secrets were in use, and the logs describe the very requests that carried them.
    web_api = [c for c in bot.slack.calls if c.method not in ("upload", "response_url")]
    assert {call.token for call in web_api} == {BOT_TOKEN}
    assert invoicexpress.control.requests[0].query["api_key"] == INVOICEXPRESS_KEY
    assert "api_key=••••••" in log_text and "psw=••••••" in log_text
    assert len(rows) > 10
    for secret in secrets:
        assert secret not in slack_text, f"{secret} reached Slack"
        assert secret not in log_text, f"{secret} reached the logs"
        assert not [row for row in rows if secret in row], f"{secret} reached the database"
