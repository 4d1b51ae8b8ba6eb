"""A card's link, asked for once: every direct message about one approval (one to each
approver, then the requester's) carries the same card's permalink, so the outbox keeps the
links it was given (`bot.slack.notices.Permalinks`) instead of calling chat.getPermalink for
each message. A link Slack would not give is not kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals.cards import Cards, card_key
from bot.approvals.state import Approval
from bot.runtime import Runtime
from bot.slack.notices import Permalinks, SlackNotices
from bot.slack.outbox import Outbox
from commands.base import Reply
from tests.support.slack_api import BOT_TOKEN, SlackApiDouble, serve_slack_double

CHANNEL = "C0BILLING1"
NOTE = Reply(text="🔐 U1 asks for an approval: #1")


@pytest.fixture
async def slack() -> AsyncIterator[SlackApiDouble]:
    async with serve_slack_double() as double:
        yield double


@pytest.fixture
def outbox(runtime: Runtime, slack: SlackApiDouble) -> Outbox:
    client = AsyncWebClient(base_url=slack.url, token=BOT_TOKEN)
    return Outbox(runtime.engine, client, places=Cards(runtime.approvals))


@pytest.fixture
async def card(runtime: Runtime, outbox: Outbox) -> Approval:
    card = await runtime.approvals.create(
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
    await outbox.post(CHANNEL, {"text": "Approval needed"}, key=card_key(card.id))
    return card


def direct_texts(slack: SlackApiDouble) -> dict[str, str]:
    return {c: str(m["text"]) for (c, _), m in slack.messages.items() if c.startswith("D")}


async def test_one_approval_s_direct_messages_ask_for_the_card_s_link_once(
    slack: SlackApiDouble, outbox: Outbox, card: Approval
) -> None:
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
