"""HTTP mode end to end: signed requests to the real app, answers through the Slack double."""

from __future__ import annotations

import asyncio
import time

from bot.storage.store import audit
from commands.invoicexpress import client as ix_api
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from tests.support.e2e import (
    CHANNEL,
    buttons,
    message_text,
    running_bot,
    table_rows,
)
from tests.support.ports import free_port
from tests.support.signing import FORM, signed_headers, slash_command_body


async def test_a_signed_slash_command_posts_the_sequences_with_their_buttons(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        sent = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        [post] = await bot.slack.wait_for("chat.postMessage")
        message = bot.message(post.response["ts"])

    assert sent.answer.status_code == 200
    assert post.params["channel"] == CHANNEL
    sequences = list(bot.invoicexpress.sequences.values())
    text = message_text(message)
    for sequence in sequences:
        shown = ("★ " if sequence.default else "") + sequence.serie
        assert shown in text and sequence.validation_code in text
    assert list(buttons(message)) == [
        f"Set {s.serie} as default" for s in sequences if not s.default
    ]
    [asked] = bot.invoicexpress.control.requests
    assert (asked.method, asked.path) == ("GET", ix_api.SEQUENCES)
    assert bot.privates(sent.respond) == []  # nothing private: the answer went to the channel


async def test_missing_wrong_and_stale_signatures_are_refused_and_run_nothing(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        body = slash_command_body(
            "/invoicexpress",
            "sequences",
            response_url=bot.slack.response_url("forged"),
            user_id="U0VIEWER",
            channel_id=CHANNEL,
        )
        events = f"{bot.url}/slack/events"
        missing = await bot.http.post(events, content=body, headers={"Content-Type": FORM})
        wrong = await bot.http.post(
            events, content=body, headers=signed_headers(body, "not-the-signing-secret")
        )
        six_minutes_ago = int(time.time()) - 6 * 60
        stale = await bot.http.post(
            events, content=body, headers=signed_headers(body, bot.secret, six_minutes_ago)
        )
        # A good request afterwards: once the app has finished its work (leaving `running_bot`
        # waits for that), anything the refused ones had started would have been recorded too.
        good = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        await bot.slack.wait_for("chat.postMessage")
    rows = await table_rows(bot.database_url, audit)

    assert [missing.status_code, wrong.status_code, stale.status_code] == [401, 401, 401]
    assert good.answer.status_code == 200
    assert len(bot.invoicexpress.control.requests) == 1
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert bot.privates("forged") == []
    assert [row["command"] for row in rows] == ["/invoicexpress sequences"]


async def test_health_and_readiness_with_a_reachable_database(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        health = await bot.http.get(f"{bot.url}/healthz")
        ready = await bot.http.get(f"{bot.url}/readyz")

    assert health.status_code == 200 and health.json() == {"ok": True}
    assert ready.status_code == 200 and ready.json()["database"] == "writable"


async def test_readiness_fails_while_the_database_is_unreachable() -> None:
    port = free_port()  # nothing listens there
    unreachable = f"postgresql://billing:billing@127.0.0.1:{port}/billing"
    async with running_bot(unreachable, migrate=False) as bot:
        health = await bot.http.get(f"{bot.url}/healthz")
        ready = await bot.http.get(f"{bot.url}/readyz")

    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {"ok": False, "database": "unreachable"}


async def test_the_ack_comes_back_while_the_provider_is_still_stalled(database_url: str) -> None:
    sandbox = InvoiceXpressSandbox()
    sandbox.control.hold()  # no answer until the test has seen the ack and the note
    async with running_bot(database_url, invoicexpress=sandbox) as bot:
        answered = bot.answered["invoicexpress"]
        try:
            sent = await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
            acked_before_any_answer = len(answered) == 0
            posted_at_ack = len(bot.slack.calls_to("chat.postMessage"))
            await sandbox.control.wait_held()  # the request is with the provider
            note = await bot.private(sent.respond, containing="Working on")
            answered_at_note = len(answered)
            posted_at_note = len(bot.slack.calls_to("chat.postMessage"))
        finally:
            sandbox.control.release()
        [post] = await bot.slack.wait_for("chat.postMessage", timeout=15)

    assert sent.answer.status_code == 200
    assert acked_before_any_answer and posted_at_ack == 0
    assert note.startswith("⏳ Working on `/invoicexpress sequences`")
    assert answered_at_note == 0 and posted_at_note == 0  # the note came before the answer
    assert len(answered) == 1
    assert "invoice sequences" in post.params["text"]


async def test_ten_concurrent_stalled_commands_are_all_acknowledged(database_url: str) -> None:
    sandbox = InvoiceXpressSandbox()
    sandbox.control.hold()  # no answer until all ten are acknowledged and with the provider
    async with running_bot(database_url, invoicexpress=sandbox) as bot:
        answered = bot.answered["invoicexpress"]
        try:
            sent = await asyncio.gather(
                *(bot.slash("/invoicexpress", "sequences", user="U0VIEWER") for _ in range(10))
            )
            answered_at_acks = len(answered)
            posted_at_acks = len(bot.slack.calls_to("chat.postMessage"))
            await sandbox.control.wait_held(10)  # all ten in flight at once
        finally:
            sandbox.control.release()
        posts = await bot.slack.wait_for("chat.postMessage", count=10, timeout=20)

    assert [s.answer.status_code for s in sent] == [200] * 10
    assert answered_at_acks == 0 and posted_at_acks == 0
    assert len(posts) == 10 and len(answered) == 10


async def test_a_click_runs_as_the_clicker(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.slash("/invoicexpress", "sequences", user="U0VIEWER")
        [post] = await bot.slack.wait_for("chat.postMessage")
        listing = bot.message(post.response["ts"])
        target = next(s for s in bot.invoicexpress.sequences.values() if not s.default)
        label = f"Set {target.serie} as default"

        viewer = await bot.click(listing, label, user="U0VIEWER")
        refusal = await bot.private(viewer.respond, containing="needs the *operator* role")
        puts_after_viewer = [r for r in bot.invoicexpress.control.requests if r.method == "PUT"]

        operator = await bot.click(listing, label, user="U1")
        posts = await bot.slack.wait_for("chat.postMessage", count=2)

    assert viewer.answer.status_code == operator.answer.status_code == 200
    assert "you are viewer" in refusal and "BILLING_OPERATORS" in refusal
    assert puts_after_viewer == []
    [put] = [r for r in bot.invoicexpress.control.requests if r.method == "PUT"]
    assert put.path == ix_api.SET_CURRENT.format(id=target.id)
    assert target.default
    assert (
        f"Sequence *{target.serie}* (id {target.id}) is now the default" in posts[1].params["text"]
    )
    assert bot.privates(operator.respond) == []
