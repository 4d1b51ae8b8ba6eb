"""Approval cards carry Slack message metadata other apps can follow, end to end over loopback.

The card's chat.postMessage and every chat.update of it carry `billing_approval` with the
request's number, command, state and amount, as the state moves: waiting for more approvals,
running, done, failed, unknown, rejected, expired, settled. So does the result posted after an
approved run; a rate-limited post still arrives with it (the outbox keeps the params), and a
card shown privately, with the bot out of the channel, carries none (ephemeral messages take no
metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from commands.sandbox import Garble
from tests.support.e2e import CHANNEL, Bot, message_text, running_bot, wait_until
from tests.support.slack_api import Fault, SlackApiDouble

MOVE = "move-funds 10023 8.00 top-up"
EVENT = "billing_approval"


def payload(state: str, *, amount: str = "8.00", resolution: str = "") -> dict[str, Any]:
    return {
        "event_type": EVENT,
        "event_payload": {
            "approval_id": "1",
            "command": "/voipcloud move-funds",
            "state": state,
            "amount": amount,
            "resolution": resolution,
        },
    }


def states(bot: Bot, ts: str) -> list[str]:
    """The state each post and update of the message carried, in order."""
    return [m["event_payload"]["state"] for m in bot.slack.metadata_of(CHANNEL, ts)]


async def card(bot: Bot) -> str:
    """The ts of the approval card, once it is in the channel."""
    found: list[str] = []

    def landed() -> bool:
        found[:] = [
            ts for (_, ts), m in bot.slack.messages.items() if "Approval needed" in message_text(m)
        ]
        return bool(found)

    await wait_until(landed, "the approval card in the channel", 15)
    return found[0]


async def reached(bot: Bot, ts: str, state: str) -> None:
    await wait_until(lambda: state in states(bot, ts), f"the card to say {state}", 20)


def results(slack: SlackApiDouble, starting: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages.values() if str(m.get("text", "")).startswith(starting)]


def private_metadata(bot: Bot) -> list[Any]:
    """Metadata anything shown to one person carried (there should be none)."""
    notes = [c.params for c in bot.slack.calls_to("response_url")]
    return [n["metadata"] for n in [*notes, *bot.slack.ephemerals] if "metadata" in n]


async def test_a_card_and_the_approved_result_carry_the_request_to_done(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        await bot.private(click.respond, containing="#1")
        await reached(bot, ts, "done")
        await wait_until(lambda: results(bot.slack, "Funds moved"), "the result in the channel")
        [posted] = [c for c in bot.slack.calls_to("chat.postMessage") if c.response.get("ts") == ts]
        updates = [c for c in bot.slack.calls_to("chat.update") if c.params["ts"] == ts]
        [result] = results(bot.slack, "Funds moved")

    assert posted.params["metadata"] == payload("pending")
    assert [u.params["metadata"] for u in updates] == [payload("executing"), payload("done")]
    assert states(bot, ts) == ["pending", "executing", "done"]
    assert bot.slack.message(CHANNEL, ts)["metadata"] == payload("done")
    assert result["metadata"] == payload("done")
    assert private_metadata(bot) == []


async def test_a_card_waiting_for_a_second_approval_says_pending(
    database_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "rules:\n  - name: two-for-moves\n    command: voipcloud move-funds\n    approvals: 2\n"
    )
    async with running_bot(database_url, variables={"BILLING_POLICY_FILE": str(policy)}) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        first = await bot.click(bot.message(ts), "Approve", user="U2")
        await bot.private(first.respond, containing="1 of 2")
        await wait_until(lambda: len(states(bot, ts)) == 2, "the card to count one approval")
        waiting = message_text(bot.message(ts))
        second = await bot.click(bot.message(ts), "Approve", user="U3")
        await bot.private(second.respond, containing="#1")
        await reached(bot, ts, "done")

    assert "1 of 2: <@U2>" in waiting
    assert states(bot, ts) == ["pending", "pending", "executing", "done"]
    assert bot.slack.metadata_of(CHANNEL, ts)[1] == payload("pending")


async def test_a_failed_run_says_failed(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", "move-funds 10023 999999.00 top-up", user="U1")
        ts = await card(bot)
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        verdict = await bot.private(click.respond, containing="#1")
        await reached(bot, ts, "failed")

    assert verdict == "Approval #1: failed."
    assert states(bot, ts) == ["pending", "executing", "failed"]
    assert bot.slack.metadata_of(CHANNEL, ts)[-1] == payload("failed", amount="999999.00")
    assert results(bot.slack, "Funds moved") == []


async def test_an_unknown_outcome_and_its_settling_say_so(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bot.voipcloud.control.garble = Garble("truncated", acted=True)
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        await bot.private(click.respond, containing="#1")
        await reached(bot, ts, "unknown")
        settle = await bot.slash(
            "/billing", 'resolve 1 done reason="seen in the ledger"', user="U3"
        )
        await bot.private(settle.respond, containing="settled")
        await wait_until(
            lambda: bot.slack.metadata_of(CHANNEL, ts)[-1]["event_payload"]["resolution"],
            "the card to say how it was settled",
        )

    assert states(bot, ts) == ["pending", "executing", "unknown", "unknown"]
    assert bot.slack.metadata_of(CHANNEL, ts)[2] == payload("unknown")
    assert bot.slack.metadata_of(CHANNEL, ts)[3] == payload("unknown", resolution="done")


async def test_a_rejected_request_says_rejected(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        refused = await bot.slash("/billing", "reject 1 not this month", user="U2")
        await bot.private(refused.respond, containing="rejected")
        await reached(bot, ts, "rejected")

    assert states(bot, ts) == ["pending", "rejected"]
    assert bot.slack.metadata_of(CHANNEL, ts)[-1] == payload("rejected")
    assert [r for r in bot.voipcloud.control.requests if r.method == "PUT"] == []


async def test_an_expired_request_says_expired(database_url: str) -> None:
    # A request open for about a second, and a sweeper that looks every 0.2 s.
    variables = {"APPROVAL_TTL_HOURS": "0.0003"}
    async with running_bot(database_url, variables=variables, sweep_every=0.2) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        await reached(bot, ts, "expired")

    assert states(bot, ts) == ["pending", "expired"]
    assert bot.slack.metadata_of(CHANNEL, ts)[-1] == payload("expired")


async def test_rate_limited_posts_arrive_later_with_their_metadata(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.inject("chat.postMessage", Fault(status=429, retry_after=1))
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card(bot)
        bot.slack.inject("chat.postMessage", Fault(status=429, retry_after=1))  # the result's
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        await bot.private(click.respond, containing="#1")
        await wait_until(lambda: results(bot.slack, "Funds moved"), "the result in the channel")
        posts = bot.slack.calls_to("chat.postMessage")
        [result] = results(bot.slack, "Funds moved")

    refused = [c for c in posts if c.status == 429]
    assert len(refused) == 2
    assert [c.params["metadata"]["event_payload"]["state"] for c in refused] == [
        "pending",
        "done",
    ]
    assert bot.slack.metadata_of(CHANNEL, ts)[0] == payload("pending")
    assert states(bot, ts)[-1] == "done"
    assert result["metadata"] == payload("done")


async def test_a_card_shown_privately_carries_no_metadata(database_url: str) -> None:
    slack = SlackApiDouble(not_in_channel={CHANNEL})
    async with running_bot(database_url, slack=slack) as bot:
        sent = await bot.slash("/voipcloud", MOVE, user="U1")
        shown = await bot.private(sent.respond, containing="Approval needed")
        await bot.private(sent.respond, containing="not a member")

    assert "#1" in shown
    refused = bot.slack.calls_to("chat.postMessage")
    assert refused and refused[0].params["metadata"] == payload("pending")  # asked for the channel
    assert private_metadata(bot) == []
    assert bot.slack.messages == {}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_command_with_no_money_says_amount_empty(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/invoicexpress", "sequence create 2031", user="U1")
        ts = await card(bot)

    [meta] = bot.slack.metadata_of(CHANNEL, ts)
    assert meta["event_payload"]["command"] == "/invoicexpress sequence create"
    assert meta["event_payload"]["amount"] == ""
