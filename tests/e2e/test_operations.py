"""What an operator sees of `billing-bot serve`: a quiet JSON log and `GET /metrics`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.schedules.store import Schedule, ScheduleStore
from bot.storage import store
from bot.storage.store import audit, schedules, utcnow
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from tests.support.e2e import (
    CHANNEL,
    SlackSender,
    bot_environment,
    invoicexpress_env,
    table_rows,
    wait_until,
)
from tests.support.processes import replicas
from tests.support.server import serve_asgi
from tests.support.slack_api import SlackApiDouble, serve_slack_double

SIGNING_SECRET = "e2e-ops-signing-3b7c"
BOT_TOKEN = "xoxb-e2e-ops-5e1f02"
API_KEY = "ix-e2e-ops-key-a94d"
METRICS_TOKEN = "e2e-ops-metrics-5a0b7c3d91"
CHATTY = ("alembic", "apscheduler", "uvicorn.access", "httpx", "httpcore")


async def add_due_reminder(database_url: str) -> Schedule:
    """A closing reminder already due; ActivePlatform is not configured, so its run fails."""

    engine = store.make_engine(database_url)
    try:
        schedule = await ScheduleStore(engine, tz=ZoneInfo("UTC")).add(
            kind="closing-reminder",
            cron="0 9 1 * *",
            args={"accounts": "all"},
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


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_serve_logs_one_json_line_per_command_and_serves_metrics(
    database_url: str, tmp_path: Path
) -> None:
    sandbox = InvoiceXpressSandbox(api_key=API_KEY)
    async with (
        serve_slack_double(SlackApiDouble(bot_token=BOT_TOKEN)) as slack,
        serve_asgi(sandbox.app(), thread=True) as ix_url,
    ):
        environment = {
            **bot_environment(
                database_url=database_url,
                slack=slack,
                secret=SIGNING_SECRET,
                providers=invoicexpress_env(ix_url, sandbox),
            ),
            "LOG_FORMAT": "json",
            "SCHEDULER_TICK_SECONDS": "0.5",
            "METRICS_TOKEN": METRICS_TOKEN,
        }

        async def audited(count: int) -> bool:
            return len(await table_rows(database_url, audit)) >= count

        async with (
            replicas(environment, tmp_path, count=1) as [replica],
            httpx.AsyncClient(timeout=30) as http,
        ):
            sender = SlackSender(slack=slack, url=replica.url, http=http, secret=SIGNING_SECRET)
            await sender.slash("/invoicexpress", "sequences", user="U0VIEWER")
            await sender.slash("/invoicexpress", "sequence abc", user="U0VIEWER")
            await wait_until(lambda: audited(2), "two audit rows", timeout=15)
            slack.fail_next("chat.postMessage", "ratelimited")
            await add_due_reminder(database_url)  # fired on a scheduler tick
            await wait_until(lambda: audited(3), "the scheduled run", timeout=15)
            await slack.wait_for("chat.postMessage", timeout=15)
            bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            metrics = await http.get(f"{replica.url}/metrics", headers=bearer)
        log = replica.log_text()
        rows = await table_rows(database_url, audit)

    assert metrics.status_code == 200
    text = metrics.text
    assert (
        sample(
            text,
            "billing_commands_total",
            provider="invoicexpress",
            command="/invoicexpress sequences",
            outcome="ok",
        )
        == 1
    )
    assert (
        sample(
            text,
            "billing_commands_total",
            provider="invoicexpress",
            command="/invoicexpress sequence",
            outcome="invalid",
        )
        == 1
    )
    assert (
        sample(text, "billing_schedule_runs_total", kind="closing-reminder", result="failed") == 1
    )
    assert (
        sample(
            text, "billing_slack_api_calls_total", method="chat.postMessage", result="ratelimited"
        )
        == 1
    )
    assert (
        sample(
            text, "billing_provider_request_seconds_count", provider="invoicexpress", status="200"
        )
        == 1
    )
    assert sample(text, "billing_approvals", state="pending") == 0

    records: list[dict[str, Any]] = [json.loads(line) for line in log.splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert not [r for r in records if r["logger"].startswith(CHATTY)]
    assert not [r for r in records if "token` will be unused" in r["message"]]
    commands = [r for r in records if r["logger"] == "bot.commands"]
    assert [(r["command"], r["decision"], r["outcome"]) for r in commands] == [
        (str(row["command"]), str(row["decision"]), str(row["outcome"])) for row in rows
    ]
    assert [r["audit_id"] for r in commands] == [row["id"] for row in rows]
    assert commands[0]["user"] == "U0VIEWER" and isinstance(commands[0]["duration_ms"], int)
    assert commands[2]["user"] == "schedule:1" and "detail" in commands[2]
    for secret in (SIGNING_SECRET, BOT_TOKEN, API_KEY, METRICS_TOKEN):
        assert secret not in log
