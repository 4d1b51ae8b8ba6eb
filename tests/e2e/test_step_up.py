"""Step-up codes and reasons end to end: Slack-signed requests to the real app over loopback.

A policy asks for the approver's authenticator code on VoIPcloud moves over 100 and for a
reason over 1,000. People enrol with `/billing mfa enroll` (the QR comes in their direct
message), confirm in the DM's form, and approve in the modal the Approve button opens. Codes
come from pyotp at the real time: an approval's code is the next step's (one step of drift is
allowed), so it is never the code that confirmed the enrolment.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from bot.storage.store import approvals, audit
from tests.support.e2e import (
    CHANNEL,
    Bot,
    buttons,
    every_row,
    message_text,
    recorded_text,
    running_bot,
    table_rows,
    wait_until,
)
from tests.support.slack_api import Fault

KEY = base64.b64encode(bytes(range(100, 132))).decode()
POLICY = """
rules:
  - name: moves-need-a-code
    command: voipcloud move-funds
    when: [{field: amount, over: 100}]
    step_up: totp
  - name: big-moves-need-a-reason
    command: voipcloud move-funds
    when: [{field: amount, over: 1000}]
    reason: required
"""
RATE_LIMITED = Fault(status=429, retry_after=1)


@pytest.fixture(autouse=True)
def step_up_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text(POLICY, encoding="utf-8")
    monkeypatch.setenv("BILLING_POLICY_FILE", str(path))
    monkeypatch.setenv("BILLING_SECRET_KEY", KEY)


def next_code(totp: pyotp.TOTP) -> str:
    """The next step's code: within the drift, and never the one that confirmed."""
    return totp.at(time.time(), counter_offset=1)


def wrong_code(totp: pyotp.TOTP) -> str:
    return totp.at(time.time() - 3600)


def ok_calls(bot: Bot, method: str) -> list[Any]:
    return [c for c in bot.slack.calls_to(method) if c.status == 200 and c.response.get("ok")]


async def said_to(bot: Bot, user: str, containing: str) -> str:
    """A note only `user` saw, sent with the Web API (a form's answers have no response_url)."""
    found: list[str] = []

    def arrived() -> bool:
        found[:] = [
            str(c.params.get("text", ""))
            for c in ok_calls(bot, "chat.postEphemeral")
            if c.params.get("user") == user and containing in str(c.params.get("text", ""))
        ]
        return bool(found)

    await wait_until(arrived, f"a note to {user} containing {containing!r}")
    return found[0]


async def opened_view(bot: Bot, count: int) -> dict[str, Any]:
    """The `count`th modal the bot opened."""
    await wait_until(lambda: len(ok_calls(bot, "views.open")) >= count, f"modal {count}")
    view: dict[str, Any] = ok_calls(bot, "views.open")[count - 1].response["view"]
    return view


async def enrol(bot: Bot, user: str, views: int) -> tuple[pyotp.TOTP, str]:
    """Enrolled through Slack: `/billing mfa enroll`, then the DM's button and its form.
    Returns the authenticator and the DM's channel."""
    sent = await bot.slash("/billing", "mfa enroll", user=user)
    await bot.private(sent.respond, containing="Sent to your direct messages")
    dm = "D" + user[1:]  # the double's direct-message channel for `user`
    await wait_until(
        lambda: [c for c in ok_calls(bot, "chat.postMessage") if c.params["channel"] == dm],
        "the enrolment's direct message",
    )
    [post] = [c for c in ok_calls(bot, "chat.postMessage") if c.params["channel"] == dm]
    seed = str(post.params["text"]).split("secret=")[1].split("&")[0]
    totp = pyotp.TOTP(seed)
    await bot.click(
        bot.message(post.response["ts"], dm), "Enter the first code", user=user, channel=dm
    )
    view = await opened_view(bot, views)
    answer = await bot.submit(view, {"code": totp.now()}, user=user)
    assert answer.status_code == 200
    await said_to(bot, user, "Step-up enrolled")
    return totp, seed


async def card_of(bot: Bot, text: str, user: str = "U1") -> dict[str, Any]:
    """The card of a new request (`/voipcloud <text>`), once posted."""

    def cards() -> list[Any]:
        return [c for c in ok_calls(bot, "chat.postMessage") if "Approval needed" in str(c.params)]

    before = len(cards())
    await bot.slash("/voipcloud", text, user=user)
    await wait_until(lambda: len(cards()) > before, "the card")
    return bot.message(cards()[-1].response["ts"])


def moves(bot: Bot) -> int:
    return len([r for r in bot.voipcloud.control.requests if r.method == "PUT"])


async def test_an_enrolled_approver_approves_in_the_modal_and_the_move_runs_once(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(database_url) as bot:
        bot.slack.inject("chat.postMessage", RATE_LIMITED)  # the enrolment's DM, once
        totp, seed = await enrol(bot, "U2", views=1)
        card = await card_of(bot, "move-funds 10023 150.00 top-up")
        bot.slack.inject("views.open", RATE_LIMITED)  # the approval's modal, once
        click = await bot.click(card, "Approve", user="U2")
        view = await opened_view(bot, 2)
        asked = await bot.private(click.respond, containing="asked in the form")
        before = moves(bot)
        code = next_code(totp)
        submitted = await bot.submit(view, {"code": code}, user="U2")
        verdict = await said_to(bot, "U2", "Approval #1:")
        again = await bot.submit(view, {"code": code}, user="U2")
        refused = await said_to(bot, "U2", "already done")
        final = bot.message(card["ts"])
    rows = await table_rows(bot.database_url, audit)
    everything = await every_row(bot.database_url)

    assert [b["block_id"] for b in view["blocks"]] == ["code"]
    assert view["blocks"][0]["label"]["text"] == "Authenticator code"
    assert json.loads(view["private_metadata"])["fixed"] == {"id": "1"}
    assert "needs your authenticator code: asked in the form" in asked
    assert before == 0
    assert submitted.status_code == again.status_code == 200
    assert verdict == "Approval #1: done." and "nothing was run again" in refused
    assert moves(bot) == 1
    assert "*done* — approved by <@U2>" in message_text(final) and buttons(final) == {}
    assert [(r["decision"], r["outcome"]) for r in rows if r["approval_id"] == 1] == [
        ("requested", "pending"),
        ("step-up", "ok"),
        ("approved", "executing"),
        ("executed", "done"),
    ]
    # Both rate-limited calls were retried after Retry-After; nothing was lost.
    assert [c.status for c in bot.slack.calls_to("views.open")][:3] == [200, 429, 200]
    # The seed reached Slack only in the person's DM, sealed in the database, nowhere in logs;
    # the code and the key reached nothing at all.
    dm_only = [c for c in bot.slack.calls if seed in json.dumps(c.params)]
    assert dm_only and {c.params.get("channel") for c in dm_only} == {"D2"}
    assert ok_calls(bot, "files.completeUploadExternal")[0].params["channel_id"] == "D2"
    slack_text = recorded_text(bot.slack)
    for secret in (code, KEY):
        assert secret not in slack_text
    for secret in (seed, code, KEY):
        assert secret not in caplog.text
        assert not [row for row in everything if secret in row]


async def test_wrong_replayed_and_locked_out_codes_move_nothing(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        totp, _ = await enrol(bot, "U2", views=1)
        first = await card_of(bot, "move-funds 10023 150.00 top-up")
        await card_of(bot, "move-funds 10023 160.00 top-up")
        await bot.click(first, "Approve", user="U2")
        view = await opened_view(bot, 2)
        await bot.submit(view, {"code": wrong_code(totp)}, user="U2")
        wrong = await said_to(bot, "U2", "the code is wrong")
        code = next_code(totp)
        await bot.submit(view, {"code": code}, user="U2")
        await said_to(bot, "U2", "Approval #1: done.")
        replay = await bot.slash("/billing", f"approve 2 code={code}", user="U2")
        replayed = await bot.private(replay.respond, containing="used already")
        for _ in range(5):
            tried = await bot.slash("/billing", f"approve 2 code={wrong_code(totp)}", user="U2")
            await bot.private(tried.respond, containing="was not approved")
        late = await bot.slash("/billing", f"approve 2 code={next_code(totp)}", user="U2")
        locked = await bot.private(late.respond, containing="locked until")
    rows = await table_rows(bot.database_url, audit)
    states = [(r["id"], r["status"]) for r in await table_rows(bot.database_url, approvals)]

    assert "4 tries left" in wrong
    assert "that code was used already" in replayed
    assert "An admin can reset it" in locked
    assert moves(bot) == 1 and states == [(1, "done"), (2, "pending")]
    assert [r["outcome"] for r in rows if r["decision"] == "step-up"] == [
        "wrong code",
        "ok",
        "replayed",
        *["wrong code"] * 5,
        "locked",
    ]
    assert not [r for r in rows if code in repr(r)]


async def test_an_approver_not_enrolled_is_told_how_to_enrol_and_nothing_counts(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        card = await card_of(bot, "move-funds 10023 150.00 top-up")
        click = await bot.click(card, "Approve", user="U3")
        told = await bot.private(click.respond, containing="mfa enroll")
        final = bot.message(card["ts"])
    [row] = await table_rows(bot.database_url, approvals)
    assert "Your click did not count" in told
    assert ok_calls(bot, "views.open") == [] and moves(bot) == 0
    assert row["status"] == "pending" and list(buttons(final)) == ["Approve", "Reject"]


async def test_a_required_reason_is_asked_with_the_code_and_shown_on_the_card(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        totp, _ = await enrol(bot, "U2", views=1)
        card = await card_of(bot, "move-funds 10023 1500.00 top-up")
        await bot.click(card, "Approve", user="U2")
        view = await opened_view(bot, 2)
        await bot.submit(view, {"code": next_code(totp), "reason": "ok"}, user="U2")
        short = await said_to(bot, "U2", "needs a reason")
        await bot.submit(
            view, {"code": next_code(totp), "reason": "matches the signed order"}, user="U2"
        )
        await said_to(bot, "U2", "Approval #1: done.")
        final = bot.message(card["ts"])
    rows = await table_rows(bot.database_url, audit)

    assert [b["block_id"] for b in view["blocks"]] == ["code", "reason"]
    assert "Approving #1 needs a reason of at least 2 words" in short
    assert "*Reason* (<@U2>): matches the signed order" in message_text(final)
    assert moves(bot) == 1
    [approved] = [r for r in rows if r["decision"] == "approved"]
    assert approved["detail"] == "by U2; reason: matches the signed order"


async def test_rejecting_asks_why_in_a_modal_and_typed_without_a_reason_is_refused(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        card = await card_of(bot, "move-funds 10023 50.00 top-up")
        typed = await bot.slash("/billing", "reject 1", user="U2")
        refused = await bot.private(typed.respond, containing="needs a reason")
        await bot.click(card, "Reject", user="U2")
        view = await opened_view(bot, 1)
        await bot.submit(view, {"reason": "wrong customer account"}, user="U2")
        await wait_until(
            lambda: "rejected" in message_text(bot.message(card["ts"])), "the rejected card"
        )
        final = bot.message(card["ts"])
    [row] = await table_rows(bot.database_url, approvals)

    assert "Nothing was rejected" in refused
    assert [b["block_id"] for b in view["blocks"]] == ["reason"]
    assert "🚫 #1 rejected by <@U2>: wrong customer account" in message_text(final)
    assert (row["status"], row["reason"]) == ("rejected", "wrong customer account")
    assert moves(bot) == 0
    assert CHANNEL == row["channel"]


async def test_an_enrolment_slack_refuses_is_said_and_a_new_one_works(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.fail_next("chat.postMessage", "channel_not_found")  # the DM, not retried
        sent = await bot.slash("/billing", "mfa enroll", user="U2")
        refused = await bot.private(sent.respond, containing="could not send")
        await enrol(bot, "U2", views=1)
    assert "Run `/billing mfa enroll` again in a minute" in refused
    assert "secret=" not in "".join(bot.privates(sent.respond))
