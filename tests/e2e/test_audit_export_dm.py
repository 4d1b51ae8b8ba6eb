"""`/billing audit export` in Slack: the CSV reaches the requester's direct message with the
bot (opened with `conversations.open`, since files are shared to a channel id, not a user id),
and the channel sees nothing of it; `to=channel` posts it in the channel instead."""

from __future__ import annotations

from tests.support.e2e import CHANNEL, running_bot
from tests.support.slack_api import SlackApiDouble

PERIOD = "2020-01-01 2099-12-31"


async def test_the_export_is_uploaded_to_the_requesters_direct_message(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/billing", f"audit export {PERIOD}", user="U2")
        await bot.slack.wait_for("files.completeUploadExternal", timeout=10)
        told = await bot.private(sent.respond, containing="direct message")
        [opened] = bot.slack.calls_to("conversations.open")
        posts = bot.slack.calls_to("chat.postMessage")

    assert sent.answer.status_code == 200
    assert opened.params["users"] == "U2"
    assert told == "Sent the audit log 2020-01-01 … 2099-12-31 to you in a direct message."
    assert [p.params["channel"] for p in posts] == ["D2"]
    assert posts[0].params["text"].startswith("Audit log 2020-01-01 … 2099-12-31: ")
    [shared] = bot.slack.shared_files()
    assert shared.filename == "audit-2020-01-01-2099-12-31.csv"
    assert shared.channels == ["D2"]
    assert shared.data is not None and shared.data.startswith(b"id,at,user_id,")


async def test_to_channel_posts_the_export_in_the_channel(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/billing", f"audit export {PERIOD} to=channel", user="U2")
        await bot.slack.wait_for("files.completeUploadExternal", timeout=10)
        opened = bot.slack.calls_to("conversations.open")

    assert sent.answer.status_code == 200
    assert opened == []
    [shared] = bot.slack.shared_files()
    assert shared.channels == [CHANNEL]


async def test_a_refused_direct_message_is_explained_and_nothing_is_posted(
    database_url: str,
) -> None:
    slack = SlackApiDouble()
    slack.scopes.discard("im:write")  # an app installed before it asked for im:write
    async with running_bot(database_url, slack=slack) as bot:
        sent = await bot.slash("/billing", f"audit export {PERIOD}", user="U2")
        told = await bot.private(sent.respond, containing="could not open a direct message")

    assert "add `to=channel` to post it in this channel" in told
    assert bot.slack.shared_files() == []
    assert bot.slack.calls_to("chat.postMessage") == []
