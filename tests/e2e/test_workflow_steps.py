"""Workflow Builder steps end to end over loopback: `function_executed` events in, completions
(`functions.completeSuccess` / `functions.completeError`) out, as Slack sends and answers them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.cli import open_socket
from bot.mrkdwn import plain
from bot.runtime import load_settings
from bot.storage.store import approvals, audit, step_runs
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.e2e import (
    CHANNEL,
    Bot,
    bot_environment,
    drain,
    every_row,
    message_text,
    running_bot,
    table_rows,
    voipcloud_env,
    wait_until,
)
from tests.support.server import serve_asgi
from tests.support.signing import function_executed_payload
from tests.support.slack_api import Fault, SlackApiDouble, serve_slack_double
from tests.support.socket_mode import serve_socket_mode_double

MOVE = {"account": "10023", "amount": "8.00", "description": "refund form", "requested_by": "U1"}


async def completed(slack: SlackApiDouble, execution: str, timeout: float = 15.0) -> dict[str, Any]:
    await wait_until(lambda: execution in slack.completions, f"{execution} completed", timeout)
    return slack.completions[execution]


def completion_calls(slack: SlackApiDouble) -> list[Any]:
    return [
        c
        for c in slack.calls
        if c.method in ("functions.completeSuccess", "functions.completeError")
    ]


def puts(bot: Bot) -> int:
    return len([r for r in bot.voipcloud.control.requests if r.method == "PUT"])


async def card_ts(bot: Bot) -> str:
    found: list[str] = []

    def landed() -> bool:
        found[:] = [
            ts for (_, ts), m in bot.slack.messages.items() if "Approval needed" in message_text(m)
        ]
        return bool(found)

    await wait_until(landed, "the approval card", 15)
    return found[0]


async def test_a_balance_step_completes_with_the_exact_figures(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("bot", "commands", "slack_bolt", "slack_sdk"):  # whatever sees the event
        caplog.set_level(logging.DEBUG, logger=name)
    async with running_bot(database_url) as bot:
        typed = await bot.slash("/voipcloud", "balance 10023", user="U0VIEWER")
        assert typed.answer.status_code == 200
        [post] = await bot.slack.wait_for("chat.postMessage")
        shown = message_text(bot.slack.message(CHANNEL, post.response["ts"]))
        answer = await bot.step(
            "voipcloud_balance",
            {"account": "10023", "requested_by": "U0VIEWER"},
            execution="Fx0BALANCE1",
            workflow="Wx0MONDAY1",
        )
        done = await completed(bot.slack, "Fx0BALANCE1")
        rows = await table_rows(bot.database_url, audit)
        stored = await every_row(bot.database_url)
    assert answer.status_code == 200
    outputs = done["outputs"]
    assert outputs["closing_balance"] == "242.08793"  # as the sandbox sent it, never rounded
    assert all(isinstance(v, str) for v in outputs.values())
    assert "242.08793" in shown and outputs["text"].startswith("Customer 10023")
    [call] = completion_calls(bot.slack)
    assert call.method == "functions.completeSuccess" and call.token == bot.slack.bot_token
    assert not [c for c in bot.slack.calls if c.token == bot.slack.function_token]
    assert len(bot.slack.calls_to("chat.postMessage")) == 1  # the typed one: a step posts nothing
    [step] = [r for r in rows if r["decision"] == "step" and r["outcome"] == "started"]
    assert step["user_id"] == "U0VIEWER"
    assert "workflow Wx0MONDAY1" in step["detail"] and "Fx0BALANCE1" in step["detail"]
    assert not [row for row in stored if bot.slack.function_token in row]  # nothing keeps it
    assert bot.slack.function_token not in caplog.text  # the event's token: never logged


async def test_a_file_step_posts_the_file_once_and_completes_with_its_link(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        # The first completion is rate limited: the retry reuses the file already posted.
        bot.slack.inject("functions.completeSuccess", Fault(status=429, retry_after=1))
        await bot.step(
            "smsc_invoice_get",
            {"user": "acme", "id": 501, "requested_by": "U0VIEWER"},
            execution="Fx0PDF",
        )
        done = await completed(bot.slack, "Fx0PDF")
    [served] = bot.answered["smsc"].answers
    [shared] = bot.slack.shared_files()
    assert shared.data == served.body and shared.channels == [CHANNEL]
    assert shared.filename == "smsc-invoice-501.pdf"
    outputs = done["outputs"]
    assert outputs["invoice_id"] == "501"
    assert outputs["file_permalink"].startswith("https://")
    assert outputs["text"].startswith("SMSC invoice 501 (sub-client acme)")
    assert [c.status for c in completion_calls(bot.slack)] == [429, 200]


async def test_a_step_with_a_bad_input_fails_with_the_typed_sentence_and_calls_nobody(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        typed = await bot.slash("/voipcloud", "balance 12ab", user="U0VIEWER")
        sentence = await bot.private(typed.respond)
        await bot.step(
            "voipcloud_balance",
            {"account": "12ab", "requested_by": "U0VIEWER"},
            execution="Fx0BAD1",
        )
        done = await completed(bot.slack, "Fx0BAD1")
    assert done == {"error": plain(sentence)}  # the typed sentence, as plain text
    assert done["error"].startswith("account: '12ab' is not an account number")
    assert bot.voipcloud.control.requests == []


async def test_a_viewer_as_requested_by_cannot_move_funds(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        typed = await bot.slash("/voipcloud", "move-funds 10023 8.00 refund", user="U0VIEWER")
        sentence = await bot.private(typed.respond)
        await bot.step(
            "voipcloud_move_funds", {**MOVE, "requested_by": "U0VIEWER"}, execution="Fx0V"
        )
        done = await completed(bot.slack, "Fx0V")
        rows = await table_rows(bot.database_url, approvals)
        trail = await table_rows(bot.database_url, audit)
    assert done == {"error": plain(sentence)}
    assert done["error"].startswith("/voipcloud move-funds needs the operator role")
    assert rows == [] and puts(bot) == 0
    assert not bot.slack.calls_to("chat.postMessage")
    assert ("U0VIEWER", "refused", "denied") in [
        (r["user_id"], r["decision"], r["outcome"]) for r in trail
    ]


async def test_outputs_slack_refuses_fail_the_step_saying_it_ran(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.fail_next("functions.completeSuccess", "parameter_validation_failed")
        await bot.step(
            "voipcloud_balance", {"account": "10023", "requested_by": "U1"}, execution="Fx0OLD"
        )
        done = await completed(bot.slack, "Fx0OLD")
    assert done == {
        "error": "The command ran, but Slack refused its outputs (parameter_validation_failed); "
        "open the workflow in Workflow Builder to update this step."
    }
    methods = [c.method for c in completion_calls(bot.slack)]
    assert methods == ["functions.completeSuccess", "functions.completeError"]


async def test_a_step_without_a_person_is_refused(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.step("voipcloud_balance", {"account": "10023"}, execution="Fx0NOBODY")
        done = await completed(bot.slack, "Fx0NOBODY")
    assert done["error"].startswith("requested_by must be a person")
    assert bot.voipcloud.control.requests == []


async def test_a_move_step_waits_for_the_approval_and_completes_once(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.step("voipcloud_move_funds", MOVE, execution="Fx0MOVE1", workflow="Wx0REFUND")
        ts = await card_ts(bot)
        await asyncio.sleep(0)  # nothing completes while the request waits
        assert "Fx0MOVE1" not in bot.slack.completions
        await bot.click(bot.message(ts), "Approve", user="U2")
        done = await completed(bot.slack, "Fx0MOVE1")
        # A second delivery of the same event runs nothing again.
        await bot.step("voipcloud_move_funds", MOVE, execution="Fx0MOVE1", workflow="Wx0REFUND")

        async def recorded() -> bool:
            rows = await table_rows(bot.database_url, audit)
            return any(r["outcome"] == "completed" for r in rows if r["decision"] == "step")

        await wait_until(recorded, "the completion audited", 10)
        [run] = await table_rows(bot.database_url, step_runs)
        trail = await table_rows(bot.database_url, audit)
    outputs = done["outputs"]
    assert (outputs["approval_id"], outputs["state"], outputs["decided_by"]) == ("1", "done", "U2")
    assert outputs["customer_balance"] and "." in outputs["customer_balance"]
    assert outputs["text"].startswith("Funds moved")
    assert puts(bot) == 1 and len(completion_calls(bot.slack)) == 1
    assert run["approval_id"] == 1 and run["workflow_execution_id"] == "Wx0REFUND"
    steps = [(r["outcome"], r["user_id"]) for r in trail if r["decision"] == "step"]
    assert steps == [("started", "U1"), ("completed", "U1")]  # the second delivery: no row


async def test_a_rejected_move_step_fails_with_the_reason(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        await bot.step("voipcloud_move_funds", MOVE, execution="Fx0REJ")
        await card_ts(bot)
        await bot.slash("/billing", "reject 1 not this month", user="U2")
        done = await completed(bot.slack, "Fx0REJ")
    assert done == {
        "error": "Approval #1 (/voipcloud move-funds) was rejected by <@U2>: not this month."
    }
    assert puts(bot) == 0


async def test_a_rate_limited_completion_completes_once(database_url: str) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.inject("functions.completeSuccess", Fault(status=429, retry_after=1))
        await bot.step("voipcloud_move_funds", MOVE, execution="Fx0RATE")
        ts = await card_ts(bot)
        await bot.click(bot.message(ts), "Approve", user="U2")
        done = await completed(bot.slack, "Fx0RATE")
    assert done["outputs"]["state"] == "done"
    calls = completion_calls(bot.slack)
    assert [c.status for c in calls] == [429, 200]
    assert puts(bot) == 1


async def test_a_restart_between_approval_and_completion_completes_once(
    database_url: str,
) -> None:
    slack = SlackApiDouble()
    async with running_bot(database_url, slack=slack) as first:
        slack.inject("functions.completeSuccess", *[Fault(status=503)] * 50)
        await first.step("voipcloud_move_funds", MOVE, execution="Fx0RESTART")
        ts = await card_ts(first)
        await first.click(first.message(ts), "Approve", user="U2")
        await wait_until(lambda: puts(first) == 1, "the transfer", 10)
        await wait_until(lambda: slack.calls_to("functions.completeSuccess"), "a try", 10)
        voipcloud = first.voipcloud
    assert "Fx0RESTART" not in slack.completions
    slack.faults.clear()  # Slack is back; the first process is gone

    async with running_bot(database_url, slack=slack, voipcloud=voipcloud) as second:
        done = await completed(slack, "Fx0RESTART", timeout=20)
        assert puts(second) == 1
    assert done["outputs"]["decided_by"] == "U2"
    assert len([c for c in completion_calls(slack) if c.ok]) == 1


async def test_a_workflow_that_stopped_waiting_is_recorded_and_said_on_the_card(
    database_url: str,
) -> None:
    async with running_bot(database_url) as bot:
        bot.slack.stopped_executions.add("Fx0GONE")
        await bot.step("voipcloud_move_funds", MOVE, execution="Fx0GONE")
        ts = await card_ts(bot)
        await bot.click(bot.message(ts), "Approve", user="U2")

        async def recorded() -> bool:
            rows = await table_rows(bot.database_url, step_runs)
            return bool(rows) and rows[0]["result"] == "not running"

        await wait_until(recorded, "the refusal recorded", 15)
        await wait_until(
            lambda: [
                c for c in bot.slack.calls_to("chat.postMessage") if c.params.get("thread_ts")
            ],
            "the note in the card's thread",
        )
        trail = await table_rows(bot.database_url, audit)
    [note] = [c for c in bot.slack.calls_to("chat.postMessage") if c.params.get("thread_ts")]
    assert note.params["thread_ts"] == ts and "no longer waiting" in note.params["text"]
    assert [r for r in trail if r["decision"] == "step" and r["outcome"] == "not running"]
    assert puts(bot) == 1


async def test_socket_mode_delivers_the_same_step(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = VoipcloudSandbox()
    async with (
        serve_slack_double() as slack,
        serve_socket_mode_double(slack) as socket,
        serve_asgi(sandbox.app()) as vc_url,
    ):
        environment = bot_environment(
            database_url=database_url, slack=slack, providers=voipcloud_env(vc_url, sandbox)
        )
        del environment["SLACK_SIGNING_SECRET"]
        for name, value in {**environment, "SLACK_APP_TOKEN": slack.app_token}.items():
            monkeypatch.setenv(name, value)
        if not database_url.startswith("sqlite"):
            from bot.storage.store import upgrade

            await upgrade(database_url)
        handler, runtime = await open_socket(load_settings())
        try:
            await handler.connect_async()
            await socket.wait_connected()
            baseline = asyncio.all_tasks()
            payload = function_executed_payload(
                "voipcloud_balance",
                {"account": "10023", "requested_by": "U0VIEWER"},
                execution="Fx0SOCKET",
            )
            envelope = await socket.push("events_api", payload)
            await socket.wait_for_ack(envelope)
            done = await completed(slack, "Fx0SOCKET")
            await drain(baseline)
        finally:
            await handler.close_async()
            await runtime.close()
    assert done["outputs"]["closing_balance"] == "242.08793"
