"""Approvals, results and the audit log survive Slack's failures, end to end over loopback.

The Slack double answers chosen calls as Slack does under load: HTTP 429 with `Retry-After`, a
500 or 503 whose body is an HTML page, or a stall. Whatever step of an approval fails — the
card's post, its "running…" update, its final update, the result's post, a file's upload — the
provider is called exactly once, the outcome reaches the channel within seconds, and the audit
log tells the whole story.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.dispatch import Dispatcher
from bot.storage.store import approvals, audit, deliveries
from tests.support.e2e import (
    CHANNEL,
    Bot,
    message_text,
    running_bot,
    table_rows,
    wait_until,
)
from tests.support.slack_api import Fault, SlackApiDouble

MOVE = "move-funds 10023 8.00 top-up"
RATE_LIMITED = Fault(status=429, retry_after=1)
HTML_500 = Fault(status=500)
HTML_503 = Fault(status=503)


def posted(slack: SlackApiDouble, starting: str) -> list[dict[str, Any]]:
    """Messages the channel holds now whose headline starts with `starting` (results, not the
    cards that quote them)."""
    return [m for m in slack.messages.values() if str(m.get("text", "")).startswith(starting)]


async def card_ts(bot: Bot, timeout: float = 15.0) -> str:
    found: list[str] = []

    def landed() -> bool:
        found[:] = [
            ts for (_, ts), m in bot.slack.messages.items() if "Approval needed" in message_text(m)
        ]
        return bool(found)

    await wait_until(landed, "the approval card in the channel", timeout)
    # The approvers' direct messages follow the card: once they are out, the next post is the
    # one a test means to fail.
    await wait_until(lambda: _waiting(bot), "the card's notices to go", timeout)
    return found[0]


async def story(bot: Bot) -> list[tuple[str, str, str]]:
    rows = await table_rows(bot.database_url, audit)
    return [(r["user_id"], r["decision"], r["outcome"]) for r in rows if r["approval_id"] == 1]


def puts(bot: Bot) -> int:
    return len([r for r in bot.voipcloud.control.requests if r.method == "PUT"])


async def approve_move(bot: Bot) -> str:
    """Request a move as U1, approve it as U2; the card's ts."""
    sent = await bot.slash("/voipcloud", MOVE, user="U1")
    assert sent.answer.status_code == 200
    ts = await card_ts(bot)
    click = await bot.click(bot.message(ts), "Approve", user="U2")
    assert click.answer.status_code == 200
    return ts


async def settled(bot: Bot, ts: str, timeout: float = 20.0) -> None:
    """The card says done and the result is in the channel."""

    def done() -> bool:
        card = message_text(bot.slack.message(CHANNEL, ts))
        return "*done*" in card and bool(posted(bot.slack, "Funds moved"))

    await wait_until(done, "the final card and the result in the channel", timeout)


async def assert_whole(bot: Bot, ts: str) -> None:
    await settled(bot, ts)
    assert puts(bot) == 1
    [row] = await table_rows(bot.database_url, approvals)
    assert row["status"] == "done" and row["message_ts"] == ts
    assert await story(bot) == [
        ("U1", "requested", "pending"),
        ("U2", "approved", "executing"),
        ("U2", "executed", "done"),
    ]
    assert len(posted(bot.slack, "Funds moved")) == 1
    assert "running" not in message_text(bot.slack.message(CHANNEL, ts))
    await wait_until(lambda: _waiting(bot), "the outbox to empty", 10)


async def _waiting(bot: Bot) -> bool:
    rows = await table_rows(bot.database_url, deliveries)
    return not [r for r in rows if r["status"] in ("pending", "sending")]


@pytest.mark.parametrize("fault", [RATE_LIMITED, HTML_500, HTML_503], ids=["429", "500", "503"])
@pytest.mark.parametrize("times", [1, 2, 3])
async def test_a_failing_card_post_still_shows_the_card_and_runs_once(
    database_url: str, fault: Fault, times: int
) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.inject("chat.postMessage", *[fault] * times)
        ts = await approve_move(bot)
        await assert_whole(bot, ts)
        [row] = await table_rows(bot.database_url, approvals)
    assert row["requester"] == "U1" and row["decided_by"] == "U2"


@pytest.mark.parametrize("fault", [RATE_LIMITED, HTML_500], ids=["429", "500"])
@pytest.mark.parametrize("times", [1, 2])
async def test_a_failing_running_update_neither_strands_nor_skips_the_run(
    database_url: str, fault: Fault, times: int
) -> None:
    """The reported case: Approve while `chat.update` answers 429 once."""
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card_ts(bot)
        bot.slack.inject("chat.update", *[fault] * times)
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        verdict = await bot.private(click.respond, containing="#1")
        await assert_whole(bot, ts)
    assert sent.answer.status_code == click.answer.status_code == 200
    assert verdict == "Approval #1: done."


async def test_the_final_update_arrives_after_failing_and_is_never_overwritten(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card_ts(bot)
        # The "running…" update is rate limited for 2 s; the final one follows it at once.
        bot.slack.inject("chat.update", Fault(status=429, retry_after=2))
        await bot.click(bot.message(ts), "Approve", user="U2")
        await assert_whole(bot, ts)
        updates = [c for c in bot.slack.calls_to("chat.update") if c.status == 200]
    texts = [str(c.params.get("text", "")) for c in updates]
    assert "done" in texts[-1]
    # Once "done" was shown, nothing older came after it.
    first_done = next(i for i, t in enumerate(texts) if "done" in t)
    assert not [t for t in texts[first_done:] if "running" in t]


@pytest.mark.parametrize("times", [1, 2, 3])
async def test_a_failing_result_post_is_delivered_and_the_run_is_not_repeated(
    database_url: str, times: int
) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card_ts(bot)
        # The next post is the result's.
        bot.slack.inject("chat.postMessage", *[HTML_500, RATE_LIMITED, HTML_503][:times])
        click = await bot.click(bot.message(ts), "Approve", user="U2")
        verdict = await bot.private(click.respond, containing="#1")
        await assert_whole(bot, ts)
    assert verdict == "Approval #1: done."


async def test_a_stalled_update_is_retried_and_the_card_ends_done(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/voipcloud", MOVE, user="U1")
        ts = await card_ts(bot)
        bot.slack.inject("chat.update", Fault(status=503, stall=1.0))
        await bot.click(bot.message(ts), "Approve", user="U2")
        await assert_whole(bot, ts)


@pytest.mark.parametrize(
    "method", ["files.getUploadURLExternal", "files.completeUploadExternal", "chat.postMessage"]
)
async def test_an_approved_document_reaches_the_channel_despite_failures(
    database_url: str, method: str
) -> None:
    """SMSC's invoice: the PDF is uploaded after the approved run, once."""
    async with running_bot(database_url) as bot:
        user = next(iter(bot.smsc.sub_clients.values()))
        await bot.slash("/smsc", f"invoice create {user} 1500.00", user="U1")
        ts = await card_ts(bot)
        bot.slack.inject(method, RATE_LIMITED, HTML_500)
        await bot.click(bot.message(ts), "Approve", user="U2")

        def uploaded() -> bool:
            return bool(bot.slack.shared_files())

        await wait_until(uploaded, "the invoice PDF in the channel", 20)
        await wait_until(lambda: _waiting(bot), "the outbox to empty", 10)
        [row] = await table_rows(bot.database_url, approvals)
        files = bot.slack.shared_files()
        creates = [r for r in bot.smsc.control.requests if "sum" in r.query]
    assert row["status"] == "done"
    assert len(files) == 1 and (files[0].data or b"").startswith(b"%PDF")
    assert len(creates) == 1


async def test_a_result_undelivered_at_a_restart_is_delivered_once_by_the_next_process(
    database_url: str,
) -> None:
    slack = SlackApiDouble()
    async with running_bot(database_url, slack=slack) as first:
        await first.slash("/voipcloud", MOVE, user="U1")
        ts = await card_ts(first)
        # Slack is down for the result and every retry this process makes.
        slack.inject("chat.postMessage", *[HTML_503] * 50)
        slack.inject("chat.update", *[HTML_503] * 50)
        await first.click(first.message(ts), "Approve", user="U2")
        await wait_until(lambda: puts(first) == 1, "the transfer", 10)

        async def executed() -> bool:
            return ("U2", "executed", "done") in await story(first)

        await wait_until(executed, "the run to be audited", 10)
        voipcloud = first.voipcloud
    assert not posted(slack, "Funds moved")
    slack.faults.clear()  # Slack is back; the first process is gone

    async with running_bot(database_url, slack=slack, voipcloud=voipcloud) as second:
        await settled(second, ts)
        await wait_until(lambda: _waiting(second), "the outbox to empty", 10)
        assert len(posted(slack, "Funds moved")) == 1
        assert puts(second) == 1  # the same sandbox: never sent again
        [row] = await table_rows(second.database_url, approvals)
    assert row["status"] == "done"


async def test_a_failure_after_the_ack_is_told_in_one_sentence(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Dispatcher, *args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(Dispatcher, "run", broken)
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/voipcloud", "balance 10023", user="U1")
        note = await bot.private(sent.respond, containing="reference")
    assert sent.answer.status_code == 200
    assert note.startswith("Something went wrong inside the bot after your request was received")
    assert "database went away" not in note and "Traceback" not in note
