"""Two `billing-bot serve` processes sharing one PostgreSQL database.

Approvals run once whichever replica the clicks reach, and one replica (the advisory-lock
leader) fires schedules, another taking over when it dies. PostgreSQL only: SQLite is one process.
"""

from __future__ import annotations

import asyncio
import copy
import json
import signal
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from bot.schedules.store import Schedule, ScheduleStore
from bot.storage import store
from bot.storage.store import approvals, audit, schedules, utcnow
from commands.activeplatform.sandbox import ActivePlatformSandbox
from commands.invoicexpress import client as ix_api
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from tests.support.e2e import (
    CHANNEL,
    SlackSender,
    activeplatform_env,
    bot_environment,
    buttons,
    invoicexpress_env,
    message_text,
    table_rows,
    wait_until,
)
from tests.support.processes import replicas, upgrade_database
from tests.support.server import serve_asgi
from tests.support.slack_api import Call, SlackApiDouble, serve_slack_double

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
APPROVERS = ("U2", "U3", "U0APPROVER", "U0ADMIN")
LEADER = "this replica now fires schedules"


def verdicts(slack: SlackApiDouble, approval_id: int) -> list[str]:
    """What the clickers were told, privately, about the approval."""
    notes = [c.params.get("text", "") for c in slack.calls_to("response_url") if c.ok]
    notes += [c.params.get("text", "") for c in slack.calls_to("chat.postEphemeral")]
    return [str(n) for n in notes if str(n).startswith(f"Approval #{approval_id}")]


@on_postgresql
async def test_twenty_approve_clicks_across_two_replicas_run_the_request_once(
    database_url: str, tmp_path: Path
) -> None:
    sandbox = InvoiceXpressSandbox()
    async with (
        serve_slack_double() as slack,
        serve_asgi(sandbox.app(), thread=True) as ix_url,
    ):
        environment = bot_environment(
            database_url=database_url, slack=slack, providers=invoicexpress_env(ix_url, sandbox)
        )
        await upgrade_database(environment, tmp_path)
        async with (
            replicas(environment, tmp_path, count=2) as running,
            httpx.AsyncClient(timeout=30) as http,
        ):
            senders = [SlackSender(slack=slack, url=r.url, http=http) for r in running]
            await senders[0].slash("/invoicexpress", "sequence create 2031", user="U1")
            posted = (await slack.wait_for("chat.postMessage", timeout=15))[0]  # the card
            ts = posted.response["ts"]
            card = copy.deepcopy(slack.message(CHANNEL, ts))
            # One click per approver, each sent five times (as Slack retries a slow answer),
            # alternating between the replicas.
            clicks = [senders[0].click_body(card, "Approve", user=a) for a in APPROVERS]
            sending = []
            for n in range(20):
                body, _ = clicks[n % len(clicks)]
                attempt = n // len(clicks)
                retry = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_timeout"}
                sending.append(senders[n % 2].post(body, retry if attempt else None))
            answers = await asyncio.gather(*sending)
            await wait_until(lambda: len(verdicts(slack, 1)) >= 20, "20 verdicts", timeout=30)
            final = slack.message(CHANNEL, ts)
        rows = await table_rows(database_url, approvals)

    assert [a.status_code for a in answers] == [200] * 20
    creations = [r for r in sandbox.control.requests if r.method == "POST"]
    assert len(creations) == 1 and creations[0].path == ix_api.SEQUENCES
    assert json.loads(creations[0].body)["sequence"]["serie"] == "2031"
    [row] = rows
    assert row["status"] == "done" and row["decided_by"] in APPROVERS
    told = verdicts(slack, 1)
    assert told.count("Approval #1: done.") == 1
    assert len([t for t in told if "nothing was run again" in t]) == 19
    assert f"*done* — approved by <@{row['decided_by']}>" in message_text(final)
    assert buttons(final) == {}


async def add_due_schedule(database_url: str, args: dict[str, str]) -> Schedule:
    """A closing reminder whose next run is already due, added through the scheduler's API."""

    engine = store.make_engine(database_url)
    try:
        schedule = await ScheduleStore(engine, tz=ZoneInfo("UTC")).add(
            kind="closing-reminder",
            cron="0 9 1 * *",
            args=args,
            channel=CHANNEL,
            created_by="U0ADMIN",
        )
        async with engine.begin() as conn:
            await conn.execute(
                schedules.update()
                .where(schedules.c.id == schedule.id)
                .values(next_run_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()
    return schedule


@on_postgresql
async def test_one_replica_fires_a_due_schedule_and_a_survivor_takes_over(
    database_url: str, tmp_path: Path
) -> None:
    sandbox = ActivePlatformSandbox()
    async with (
        serve_slack_double() as slack,
        serve_asgi(sandbox.app(), thread=True) as ap_url,
    ):
        environment = {
            **bot_environment(
                database_url=database_url,
                slack=slack,
                providers=activeplatform_env(ap_url, sandbox),
            ),
            "SCHEDULER_TICK_SECONDS": "0.5",
        }
        await upgrade_database(environment, tmp_path)
        async with replicas(environment, tmp_path, count=2) as running:
            await wait_until(
                lambda: any(LEADER in r.log_text() for r in running), "a leader", timeout=30
            )
            leaders = [r for r in running if LEADER in r.log_text()]
            assert len(leaders) == 1, "both replicas lead"
            [survivor] = [r for r in running if r not in leaders]

            def posted() -> list[Call]:  # in the channel: the approvers' direct messages aside
                calls = slack.calls_to("chat.postMessage")
                return [c for c in calls if c.params.get("channel") == CHANNEL]

            await add_due_schedule(database_url, {"accounts": "all", "reseller": "2"})
            await wait_until(lambda: posted(), "the first run's card", timeout=30)
            [first] = posted()

            await leaders[0].stop(signal.SIGKILL)
            second = await add_due_schedule(
                database_url, {"accounts": "2005001,2005002", "reseller": "2"}
            )
            await wait_until(lambda: len(posted()) >= 2, "the second run's card", timeout=60)
            posts = posted()

            async def ended() -> bool:  # its card, then its approvers' direct messages
                rows = await table_rows(database_url, audit)
                run = (f"schedule:{second.id}", "scheduled run")
                return run in [(r["user_id"], r["decision"]) for r in rows]

            await wait_until(ended, "the second run to end", timeout=30)
            survivor_leads = LEADER in survivor.log_text()
        rows = await table_rows(database_url, approvals)

    assert survivor_leads
    assert len(posted()) == 2  # each due run posted exactly once
    assert f"{len(sandbox.accounts['2'])} accounts" in first.params["text"]
    assert "accounts=2005001,2005002" in json.dumps(posts[1].params["blocks"])
    assert [(r["origin"], r["status"]) for r in rows] == [
        ("schedule:1", "pending"),
        ("schedule:2", "pending"),
    ]
