"""Notices about a card go through the outbox after the card: a direct message carries the
card's link, a reminder goes in its thread, and Slack's failures only delay them.

The outbox runs on a clock moved by hand, so a retry is due when the test says so: nothing
here waits for time to pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.cards import Cards, card_key
from bot.approvals.state import Approval
from bot.runtime import Runtime
from bot.slack.notices import NOTICE, SlackNotices
from bot.slack.outbox import Outbox
from bot.storage.store import deliveries
from commands.base import Reply
from tests.support import Clock
from tests.support.slack_api import BOT_TOKEN, Fault, SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
NOTE = Reply(text="🔐 U1 asks for an approval: #1")
RATE_LIMITED = Fault(status=429, retry_after=5)


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2030, 1, 7, 9, 0, tzinfo=UTC))


@pytest.fixture
def outbox(runtime: Runtime, slack: SlackApiDouble, clock: Clock) -> Outbox:
    client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    return Outbox(runtime.engine, client, places=Cards(runtime.approvals), clock=clock)


@pytest.fixture
async def card(runtime: Runtime) -> Approval:
    return await runtime.approvals.create(
        command_line="/drill move r1",
        command_path="drill move",
        provider="drill",
        args={"ref": "r1"},
        description="Move r1",
        requester="U1",
        channel=CHANNEL,
        origin="user",
        approve_label="Approve",
        reject_label="Reject",
        snooze_hours=None,
        approvals_needed=1,
        approver_role=None,
        rules=None,
    )


async def post_card(outbox: Outbox, card: Approval) -> None:
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=card_key(card.id))


def direct_messages(slack: SlackApiDouble, user: str) -> list[dict[str, Any]]:
    channel = "D" + user[1:]
    return [m for (c, _), m in slack.messages.items() if c == channel]


def thread(slack: SlackApiDouble, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages.values() if m.get("thread_ts") == ts]


def card_ts(slack: SlackApiDouble) -> str:
    [ts] = [ts for (c, ts), m in slack.messages.items() if c == CHANNEL and "thread_ts" not in m]
    return ts


async def notice_rows(runtime: Runtime) -> list[dict[str, Any]]:
    query = sa.select(deliveries).where(deliveries.c.method == NOTICE).order_by(deliveries.c.id)
    async with runtime.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_a_direct_message_waits_for_a_late_card_then_carries_its_link(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, card: Approval, clock: Clock
) -> None:
    slack.inject("chat.postMessage", RATE_LIMITED)
    await post_card(outbox, card)
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    assert direct_messages(slack, "U2") == []  # the card has not landed: the notice waits
    assert slack.calls_to("chat.getPermalink") == []
    clock.advance(seconds=5)  # the card's Retry-After: it lands, and wakes its notice
    await outbox.flush()
    [message] = direct_messages(slack, "U2")
    ts = card_ts(slack)
    link = f"https://billing-team.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}"
    assert message["text"].startswith(NOTE.text) and f"<{link}|Open the request>" in message["text"]
    assert message["blocks"][-1]["text"]["text"] == f"<{link}|Open the request>"
    [row] = await notice_rows(runtime)
    assert (row["status"], row["attempts"]) == ("done", 1)  # waiting its turn was no attempt


async def test_a_rate_limited_permalink_or_direct_message_is_sent_once_later(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, card: Approval, clock: Clock
) -> None:
    await post_card(outbox, card)
    slack.inject("chat.getPermalink", RATE_LIMITED)
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    slack.inject("chat.postMessage", RATE_LIMITED)
    await SlackNotices(outbox).direct("U3", NOTE, card=card)
    assert direct_messages(slack, "U2") == direct_messages(slack, "U3") == []
    await outbox.flush()  # not due yet: Slack said when
    assert direct_messages(slack, "U2") == direct_messages(slack, "U3") == []
    clock.advance(seconds=5)
    await outbox.flush()
    await outbox.flush()
    for user in ("U2", "U3"):
        [message] = direct_messages(slack, user)
        assert "|Open the request>" in message["text"]
    assert [r["attempts"] for r in await notice_rows(runtime)] == [2, 2]


async def test_a_notice_never_holds_back_the_cards_own_updates(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
    await post_card(outbox, card)
    slack.inject("chat.postMessage", RATE_LIMITED)
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    await outbox.update(CHANNEL, {"text": "done"}, key=card_key(card.id))
    assert slack.message(CHANNEL, card_ts(slack))["text"] == "done"
    [row] = await notice_rows(runtime)
    assert row["status"] == "pending"  # still to be sent, after its Retry-After


async def test_a_reminder_goes_in_the_cards_thread_once_after_a_rate_limit(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, card: Approval, clock: Clock
) -> None:
    await post_card(outbox, card)
    slack.inject("chat.postMessage", RATE_LIMITED)
    await SlackNotices(outbox).thread(card, Reply(text="⏰ #1 is still waiting"))
    ts = card_ts(slack)
    assert thread(slack, ts) == []
    clock.advance(seconds=5)
    await outbox.flush()
    await outbox.flush()
    [reminder] = thread(slack, ts)
    assert reminder["text"] == "⏰ #1 is still waiting"
    assert "Open the request" not in reminder["text"]  # it is under the card already
    assert slack.calls_to("chat.getPermalink") == []


async def test_without_a_card_a_direct_message_goes_without_a_link_and_a_reminder_is_dropped(
    runtime: Runtime, slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
    slack.not_in_channel.add(CHANNEL)  # the card is never posted
    await post_card(outbox, card)
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    await SlackNotices(outbox).thread(card, Reply(text="⏰ #1 is still waiting"))
    [message] = direct_messages(slack, "U2")
    assert message["text"] == NOTE.text
    assert slack.calls_to("chat.getPermalink") == []
    assert [c.params["channel"] for c in slack.calls_to("chat.postMessage")] == [CHANNEL, "U2"]
    assert [r["status"] for r in await notice_rows(runtime)] == ["done", "done"]


async def test_a_notice_whose_card_slack_gives_up_on_goes_without_its_link_later(
    slack: SlackApiDouble, outbox: Outbox, card: Approval, clock: Clock
) -> None:
    slack.inject("chat.postMessage", RATE_LIMITED)
    await post_card(outbox, card)
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    slack.fail_next("chat.postMessage", "msg_too_long")  # the card's retry: a final refusal
    clock.advance(seconds=5)
    await outbox.flush()
    assert direct_messages(slack, "U2") == []  # nothing woke it: it asks again in 10 s
    clock.advance(seconds=5)
    await outbox.flush()
    [message] = direct_messages(slack, "U2")
    assert message["text"] == NOTE.text
    assert slack.calls_to("chat.getPermalink") == []


async def test_a_card_slack_cannot_link_leaves_the_direct_message_without_its_link(
    slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
    await post_card(outbox, card)
    slack.fail_next("chat.getPermalink", "message_not_found")
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    [message] = direct_messages(slack, "U2")
    assert message["text"] == NOTE.text
