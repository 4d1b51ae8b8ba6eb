"""The people who can decide are told, end to end over loopback: each approver's direct message
with the card's link, the reminder in the card's thread at half the time to live (the bot's
clock moved by hand), and the requester's message once it is done; each through Slack's 429s.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from bot.storage.store import approvals, deliveries, utcnow
from tests.support import Clock
from tests.support.e2e import CHANNEL, Bot, message_text, running_bot, table_rows, wait_until
from tests.support.slack_api import Fault, SlackApiDouble

MOVE = "move-funds 10023 8.00 top-up"
APPROVERS = ["U0APPROVER", "U2", "U3", "U0ADMIN"]  # tests/support/e2e.py's roles
RATE_LIMITED = Fault(status=429, retry_after=1)
PASSES = Fault(status=0)


def direct_messages(slack: SlackApiDouble, user: str) -> list[dict[str, Any]]:
    return [m for (channel, _), m in slack.messages.items() if channel == "D" + user[1:]]


def in_thread(slack: SlackApiDouble, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages.values() if m.get("thread_ts") == ts]


def card_of(slack: SlackApiDouble) -> str:
    [ts] = [ts for (c, ts), m in slack.messages.items() if c == CHANNEL and "thread_ts" not in m]
    return ts


def link_to(ts: str) -> str:
    """The double's chat.getPermalink answer for the card."""
    return f"<https://billing-team.slack.com/archives/{CHANNEL}/p{ts.replace('.', '')}|"


async def all_sent(bot: Bot) -> bool:
    rows = await table_rows(bot.database_url, deliveries)
    return not [r for r in rows if r["status"] in ("pending", "sending")]


async def approvers_told(bot: Bot) -> None:
    def told() -> bool:
        return all(direct_messages(bot.slack, user) for user in APPROVERS)

    await wait_until(told, "a direct message to every approver", 20)
    await wait_until(lambda: all_sent(bot), "the outbox to empty", 20)


async def test_every_approver_is_told_with_a_link_to_the_card_through_429s(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        # The card's post (its retry passes), then one direct message's link and another's post
        # are rate limited.
        bot.slack.inject("chat.postMessage", RATE_LIMITED, PASSES, RATE_LIMITED)
        bot.slack.inject("chat.getPermalink", RATE_LIMITED)
        sent = await bot.slash("/voipcloud", MOVE, user="U1")
        await approvers_told(bot)
        ts = card_of(bot.slack)
        notes = {user: direct_messages(bot.slack, user) for user in APPROVERS}
        channels = {c for c, _ in bot.slack.messages if c.startswith("D")}
        faulted = [c.method for c in bot.slack.calls if c.status == 429]
        rows = await table_rows(bot.database_url, deliveries)
        moves = [r for r in bot.voipcloud.control.requests if r.method == "PUT"]
    assert sent.answer.status_code == 200
    assert faulted == ["chat.postMessage", "chat.getPermalink", "chat.postMessage"]
    assert channels == {"D" + user[1:] for user in APPROVERS}  # never the requester
    for [note] in notes.values():
        assert note["text"].startswith("🔐 <@U1> asks for an approval: #1")
        assert link_to(ts) in note["text"]
        assert "partner → customer 10023: 8.00" in message_text(note)
    notices = [r for r in rows if r["method"] == "notice"]
    assert [r["status"] for r in notices] == ["done"] * 4
    assert sorted(r["attempts"] for r in notices) == [1, 1, 2, 2]
    assert moves == []  # telling people runs nothing


async def test_a_reminder_goes_in_the_cards_thread_once_at_half_time_through_a_429(
    database_url: str,
) -> None:
    # 06:00 UTC today: twelve hours on stays before midnight, so the day's audit anchor
    # (posted at 00:05) is not due mid-test and cannot take the injected 429.
    clock = Clock(datetime.combine(utcnow().date(), time(6), UTC))
    async with running_bot(database_url, clock=clock, sweep_every=0.05) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        await approvers_told(bot)
        ts = card_of(bot.slack)
        clock.advance(hours=11, minutes=59)
        await wait_until(lambda: all_sent(bot), "the outbox to empty", 20)
        early = in_thread(bot.slack, ts)
        bot.slack.inject("chat.postMessage", RATE_LIMITED)
        clock.advance(minutes=1)  # half of APPROVAL_TTL_HOURS' 24 h
        await wait_until(lambda: in_thread(bot.slack, ts), "the reminder in the thread", 20)
        await wait_until(lambda: all_sent(bot), "the outbox to empty", 20)
        reminders = in_thread(bot.slack, ts)
        threaded = [c for c in bot.slack.calls_to("chat.postMessage") if "thread_ts" in c.params]

        await bot.click(bot.message(ts), "Approve", user="U2")
        await wait_until(lambda: direct_messages(bot.slack, "U1"), "the requester's message", 20)
        [told] = direct_messages(bot.slack, "U1")
        [row] = await table_rows(bot.database_url, approvals)
    assert early == []
    [reminder] = reminders
    assert reminder["text"].startswith("⏰ #1 is still waiting for approval; it expires ")
    assert reminder["text"].endswith(
        "Who can still approve it: <@U0APPROVER>, <@U2>, <@U3>, <@U0ADMIN>."
    )
    assert [c.status for c in threaded] == [429, 200]  # sent once more, after Retry-After
    assert told["text"].startswith("✅ Your request #1 was approved by <@U2>: *done*")
    assert link_to(ts) in told["text"]
    assert row["status"] == "done" and row["reminded_at"] is not None
