"""SMSC PDFs reach the channel byte for byte, or the requester learns why they did not."""

from __future__ import annotations

from commands.smsc import client as smsc_api
from tests.support.e2e import CHANNEL, running_bot
from tests.support.slack_api import SlackApiDouble


async def test_the_invoice_pdf_is_uploaded_exactly_as_smsc_served_it(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/smsc", "invoice get acme 501", user="U0VIEWER")
        await bot.slack.wait_for("files.completeUploadExternal", timeout=10)
        [post] = bot.slack.calls_to("chat.postMessage")

    assert sent.answer.status_code == 200
    [served] = bot.answered["smsc"].answers
    assert (served.path, served.status) == (smsc_api.DOCUMENTS, 200)
    assert served.content_type == "application/pdf" and served.body.startswith(b"%PDF-")
    [upload] = bot.slack.calls_to("upload")
    assert upload.body == served.body
    [shared] = bot.slack.shared_files()
    assert shared.data == served.body
    assert shared.filename == "smsc-invoice-501.pdf" and shared.channels == [CHANNEL]
    assert "SMSC invoice 501 (sub-client acme)" in post.params["text"]
    assert bot.privates(sent.respond) == []


async def test_a_pdf_for_a_channel_without_the_bot_is_explained_to_the_requester(
    database_url: str,
) -> None:
    slack = SlackApiDouble(not_in_channel={CHANNEL})
    async with running_bot(database_url, slack=slack) as bot:
        sent = await bot.slash("/smsc", "invoice get acme 501", user="U0VIEWER")
        explained = await bot.private(sent.respond, containing="smsc-invoice-501.pdf")
        notes = bot.privates(sent.respond)

    assert sent.answer.status_code == 200
    assert "/invite @billing-bot" in explained and "not a member of this channel" in explained
    # The reply itself reached the requester privately, with the same advice.
    assert any("SMSC invoice 501 (sub-client acme)" in note for note in notes)
    assert any("only you see this" in note for note in notes)
    assert bot.slack.shared_files() == []
    assert len(bot.answered["smsc"]) == 1  # fetched once, not retried
