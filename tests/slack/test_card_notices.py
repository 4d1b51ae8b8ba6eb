"""Notices about a card go through the outbox after the card: a direct message carries the
card's link (asked for once per card), a reminder goes in its thread, and Slack's failures
only delay them.

The outbox runs on a clock moved by hand, so a retry is due when the test says so: nothing
here waits for time to pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.cards import Cards, card_key
from bot.approvals.state import Approval
from bot.runtime import Runtime
from bot.slack.notices import NOTICE, Permalinks, SlackNotices
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


# --- the card's link, asked for once ------------------------------------------------------------


def direct_texts(slack: SlackApiDouble) -> dict[str, str]:
    return {c: str(m["text"]) for (c, _), m in slack.messages.items() if c.startswith("D")}


async def test_one_approval_s_direct_messages_ask_for_the_card_s_link_once(
    slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
    """Each message's link is the same card's, so the outbox keeps the links it was given
    (`bot.slack.notices.Permalinks`) instead of asking for each message."""
    await post_card(outbox, card)
    for user in ("U2", "U3", "U0ADMIN", "U1"):
        await SlackNotices(outbox).direct(user, NOTE, card=card)
    [(_, ts)] = [key for key in slack.messages if key[0] == CHANNEL]
    link = f"https://billing-team.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}"
    texts = direct_texts(slack)
    assert sorted(texts) == ["D0ADMIN", "D1", "D2", "D3"]
    assert all(f"<{link}|Open the request>" in text for text in texts.values())
    assert len(slack.calls_to("chat.getPermalink")) == 1


async def test_a_link_slack_would_not_give_is_asked_for_again(
    slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
    await post_card(outbox, card)
    slack.fail_next("chat.getPermalink", "message_not_found")
    await SlackNotices(outbox).direct("U2", NOTE, card=card)
    await SlackNotices(outbox).direct("U3", NOTE, card=card)
    texts = direct_texts(slack)
    assert texts["D2"] == NOTE.text  # without its link
    assert "|Open the request>" in texts["D3"]
    assert len(slack.calls_to("chat.getPermalink")) == 2


class Links:
    """chat.getPermalink's answer for any message, counted."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def chat_getPermalink(self, *, channel: str, message_ts: str) -> dict[str, Any]:
        self.asked.append(message_ts)
        return {"ok": True, "permalink": f"https://example.slack.com/{channel}/{message_ts}"}


async def test_only_the_most_recent_links_are_kept() -> None:
    client = Links()
    links = Permalinks(size=2)
    for ts in ("1.1", "2.2", "1.1", "3.3", "1.1", "2.2"):
        found = await links.of(cast(AsyncWebClient, client), "C1", ts)
        assert found == f"https://example.slack.com/C1/{ts}"
    # 2.2 was the least recently used when 3.3 came, so it was asked for again.
    assert client.asked == ["1.1", "2.2", "3.3", "2.2"]


class SlowLinks(Links):
    """Answers once `answer` is set; raises `failure` when one is given."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.failure = failure

    async def chat_getPermalink(self, *, channel: str, message_ts: str) -> dict[str, Any]:
        self.asked.append(message_ts)
        await self.answer.wait()
        if self.failure is not None:
            raise self.failure
        return {"ok": True, "permalink": f"https://example.slack.com/{channel}/{message_ts}"}


async def test_messages_sent_at_once_share_one_question() -> None:
    client = SlowLinks()
    links = Permalinks()
    asking = [asyncio.ensure_future(links.of(cast(AsyncWebClient, client), "C1", "1.1"))]
    asking += [asyncio.ensure_future(links.of(cast(AsyncWebClient, client), "C1", "1.1"))]
    for _ in range(3):  # both are waiting for the one question
        await asyncio.sleep(0)
    assert client.asked == ["1.1"]
    asking[0].cancel()  # one message given up on does not take the answer from the other
    client.answer.set()
    cancelled, answered = await asyncio.gather(*asking, return_exceptions=True)
    assert isinstance(cancelled, asyncio.CancelledError)
    assert answered == "https://example.slack.com/C1/1.1"
    assert client.asked == ["1.1"]
    assert await links.of(cast(AsyncWebClient, client), "C1", "1.1") is not None
    assert client.asked == ["1.1"]  # kept


async def test_a_question_slack_failed_is_asked_again_for_the_next_message() -> None:
    client = SlowLinks(failure=TimeoutError())
    links = Permalinks()
    asking = [
        asyncio.ensure_future(links.of(cast(AsyncWebClient, client), "C1", "1.1")) for _ in (1, 2)
    ]
    client.answer.set()
    outcomes = await asyncio.gather(*asking, return_exceptions=True)
    assert [type(o) for o in outcomes] == [TimeoutError, TimeoutError]  # each row is retried
    client.failure = None
    assert await links.of(cast(AsyncWebClient, client), "C1", "1.1") is not None
    assert client.asked == ["1.1", "1.1"]
