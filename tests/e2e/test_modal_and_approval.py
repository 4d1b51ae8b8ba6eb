"""Modals and the two-person approval, end to end over HTTP."""

from __future__ import annotations

import base64
import json

from bot.storage.store import approvals
from commands.invoicexpress import client as ix_api
from tests.support.e2e import (
    CHANNEL,
    buttons,
    every_row,
    message_text,
    recorded_text,
    running_bot,
    table_rows,
)

AT_PASSWORD = "At-e2e-Pw-51r7"


async def test_the_at_form_opens_reports_field_errors_and_sends_the_password_base64(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        bare = await bot.slash("/invoicexpress", "at-communication", user="U0ADMIN")
        [opened] = await bot.slack.wait_for("views.open")
        view = opened.response["view"]

        bad = await bot.submit(
            view,
            {"subuser": "12345", "password": AT_PASSWORD, "communication_type": "manual"},
            user="U0ADMIN",
        )
        sent_after_bad = [r.path for r in bot.invoicexpress.control.requests]

        good = await bot.submit(
            view,
            {"subuser": "123456789/3", "password": AT_PASSWORD, "communication_type": "manual"},
            user="U0ADMIN",
        )
        [post] = await bot.slack.wait_for("chat.postMessage")
    rows = await every_row(bot.database_url)  # the app's work is done: its audit rows are in

    assert bare.answer.status_code == 200
    assert [b["block_id"] for b in view["blocks"]] == ["subuser", "password", "communication_type"]
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL

    assert bad.status_code == 200
    answer = bad.json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == ["subuser"]
    assert "9-digit NIF" in answer["errors"]["subuser"]
    assert sent_after_bad == []

    assert good.status_code == 200 and good.content in (b"", b"{}")
    [request] = bot.invoicexpress.control.requests
    assert (request.method, request.path) == ("POST", ix_api.AT_COMMUNICATION)
    sent = json.loads(request.body)["at_communication"]
    assert sent["at_password"] == base64.b64encode(AT_PASSWORD.encode()).decode()
    assert sent["at_subuser"] == "123456789/3" and sent["communication_type"] == "manual"
    assert post.params["channel"] == CHANNEL
    assert "AT communication saved" in post.params["text"]

    assert AT_PASSWORD not in recorded_text(bot.slack)
    assert not [row for row in rows if AT_PASSWORD in row]


async def test_an_approval_runs_once_after_a_second_approver_clicks(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        request = await bot.slash("/invoicexpress", "sequence create 2027", user="U1")
        posted = (await bot.slack.wait_for("chat.postMessage"))[0]  # the card, then its DMs
        ts = posted.response["ts"]
        card = bot.message(ts)

        own = await bot.click(card, "Approve", user="U1")
        refusal = await bot.private(own.respond, containing="approve")
        posts_after_own = [r for r in bot.invoicexpress.control.requests if r.method == "POST"]

        second = await bot.click(card, "Approve", user="U2")
        verdict = await bot.private(second.respond, containing="#1")
        final = bot.message(ts)
    rows = await table_rows(bot.database_url, approvals)  # read once the app's work is done

    assert request.answer.status_code == own.answer.status_code == second.answer.status_code == 200
    assert "Approval needed" in message_text(card)
    assert "POST /sequences.json" in message_text(card)
    assert list(buttons(card)) == ["Approve", "Reject"]

    assert "needs the *approver* role and you are operator" in refusal
    assert posts_after_own == []

    assert verdict == "Approval #1: done."
    [created] = [r for r in bot.invoicexpress.control.requests if r.method == "POST"]
    assert created.path == ix_api.SEQUENCES
    assert json.loads(created.body)["sequence"]["serie"] == "2027"
    assert [s.serie for s in bot.invoicexpress.sequences.values()].count("2027") == 1

    updates = bot.slack.calls_to("chat.update")
    assert updates and {u.params["ts"] for u in updates} == {ts}
    assert "*done* — approved by <@U2>" in message_text(final)
    assert buttons(final) == {}
    assert [(row["status"], row["decided_by"]) for row in rows] == [("done", "U2")]


async def test_an_approver_cannot_approve_their_own_request(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/invoicexpress", "sequence create 2028", user="U2")
        posted = (await bot.slack.wait_for("chat.postMessage"))[0]  # the card, then its DMs
        card = bot.message(posted.response["ts"])
        own = await bot.click(card, "Approve", user="U2")
        refusal = await bot.private(own.respond, containing="#1")
    rows = await table_rows(bot.database_url, approvals)  # read once the app's work is done

    assert "You requested #1 yourself" in refusal and "two-person rule" in refusal
    assert [r for r in bot.invoicexpress.control.requests if r.method == "POST"] == []
    assert list(buttons(bot.message(posted.response["ts"]))) == [
        "Approve",
        "Reject",
    ]
    assert [(row["status"], row["decided_by"]) for row in rows] == [("pending", None)]


async def test_the_approved_amount_is_the_amount_moved_over_http(database_url: str) -> None:
    """The reproduction: free text that looks like `amount=…` cannot change what runs."""
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", 'move-funds 10023 5.00 description="amount=5000"', user="U1")
        posted = (await bot.slack.wait_for("chat.postMessage"))[0]  # the card, then its DMs
        card = bot.message(posted.response["ts"])
        before = bot.voipcloud.customers["10023"].ledger.balance()
        click = await bot.click(card, "Approve", user="U2")
        verdict = await bot.private(click.respond, containing="#1")
        after = bot.voipcloud.customers["10023"].ledger.balance()

    assert "partner → customer 10023: 5.00" in message_text(card)
    assert "5000" not in message_text(card).replace("amount=5000", "")
    assert verdict == "Approval #1: done."
    [put] = [r for r in bot.voipcloud.control.requests if r.method == "PUT"]
    assert b'name="amount"\r\n\r\n5.00\r\n' in put.body
    assert b'name="description"\r\n\r\namount=5000\r\n' in put.body
    assert after - before == 5
