"""Metrics after known commands: names, labels and values, read from the exposition."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.logs import JsonFormatter
from bot.ops.metrics import Metrics, serve_metrics
from bot.runtime import Runtime
from bot.schedules.engine import Scheduler
from bot.schedules.store import Schedule, ScheduleStore
from bot.storage.audit import AuditLog, Entry
from commands.invoicexpress.sandbox import SANDBOX_API_KEY
from commands.voipcloud.budget import RateBudget, RateLimit
from tests.support import RecordingSurface, sandbox_of
from tests.support.e2e import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(metrics: Metrics) -> tuple[str, Samples]:
    body, content_type = await metrics.exposition()
    assert content_type.startswith("text/plain; version=")
    text = body.decode()
    return text, parse(text)


def without_values(text: str) -> str:
    """The exposition less each sample's value: the names, labels and help where typed text
    could show. A value is a measured number whose digits can be anything ("…7199999981…")."""
    lines = text.splitlines()
    return "\n".join(line if line.startswith("#") else line.rsplit(" ", 1)[0] for line in lines)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def run(runtime: Runtime, line: str, user: str) -> RecordingSurface:
    surface = RecordingSurface(user=user)
    await runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
    return surface


async def test_commands_are_counted_by_provider_command_and_outcome(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    await run(runtime, "/invoicexpress sequences", "U0VIEWER")
    await run(runtime, "/invoicexpress sequences", "U0VIEWER")
    await run(runtime, "/invoicexpress sequence set-current 1", "U0VIEWER")  # needs operator
    await run(runtime, "/invoicexpress sequence abc", "U0VIEWER")  # not a number
    await run(runtime, "/invoicexpress frobnicate-secretword", "U0VIEWER")  # no such command
    await run(runtime, "/invoicexpress sequence 999999", "U0VIEWER")  # the provider says 404
    await run(runtime, "/invoicexpress sequence create 2044", "U1")  # asks for approval
    sandbox.control.drop = True  # the answer to the approved write is lost
    await run(runtime, "/billing approve 1", "U2")

    text, samples = await scrape(runtime.metrics)

    def commands(command: str, outcome: str, provider: str = "invoicexpress") -> float:
        return value(
            samples, "billing_commands_total", provider=provider, command=command, outcome=outcome
        )

    assert commands("/invoicexpress sequences", "ok") == 2
    assert commands("/invoicexpress sequence set-current", "refused") == 1
    assert commands("/invoicexpress sequence", "invalid") == 1
    assert commands("unknown", "invalid") == 1
    assert commands("/invoicexpress sequence", "failed") == 1
    assert commands("/invoicexpress sequence create", "unknown") == 1
    assert commands("/billing approve", "ok", provider="billing") == 1
    assert "frobnicate" not in text and "secretword" not in text
    assert "999999" not in without_values(text)
    # the request for approval is not a run; the approval it made is counted by state
    assert value(samples, "billing_approvals", state="unknown") == 1
    assert value(samples, "billing_approvals", state="pending") == 0
    assert value(samples, "billing_approvals", state="done") == 0


async def test_provider_requests_are_timed_by_provider_and_status(runtime: Runtime) -> None:
    sandbox = sandbox_of(runtime, "invoicexpress")
    await run(runtime, "/invoicexpress sequences", "U0VIEWER")
    await run(runtime, "/invoicexpress sequence 999999", "U0VIEWER")
    await run(runtime, "/invoicexpress sequence create 2045", "U1")
    sandbox.control.drop = True
    await run(runtime, "/billing approve 1", "U2")
    _, samples = await scrape(runtime.metrics)

    def count(status: str) -> float:
        return value(
            samples,
            "billing_provider_request_seconds_count",
            provider="invoicexpress",
            status=status,
        )

    assert count("200") == 1
    assert count("404") == 1
    assert count("error") == 1  # the dropped answer
    # every request the sandbox saw was timed once
    assert count("200") + count("404") + count("error") == len(sandbox.control.requests)


async def test_queue_length_and_budget_left_are_read_at_scrape_time(runtime: Runtime) -> None:
    _, samples = await scrape(runtime.metrics)
    # The SMSC sandbox client's queue is empty; the VoIPcloud sandbox has no budget to show.
    assert value(samples, "billing_provider_queue_length", provider="smsc") == 0
    assert ("billing_provider_budget_remaining", frozenset({("provider", "voipcloud")})) not in (
        samples
    )

    now = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
    budget = RateBudget(RateLimit.parse("5/1m"), provider="VoIPcloud", clock=lambda: now)
    metrics = Metrics()
    metrics.watch_limit("voipcloud", budget)
    for _ in range(3):
        await budget.acquire(wait=False)
    _, samples = await scrape(metrics)
    assert value(samples, "billing_provider_budget_remaining", provider="voipcloud") == 2


async def test_schedule_runs_are_counted_by_kind_and_result(runtime: Runtime) -> None:
    await runtime.schedules.add(
        kind="closing-reminder",
        cron="0 9 1 * *",
        args={"accounts": "all", "reseller": "2"},
        channel="C1",
        created_by="U0ADMIN",
    )
    await run(runtime, "/billing schedule run 1", "U0ADMIN")  # ActivePlatform: the sandbox
    _, samples = await scrape(runtime.metrics)
    assert value(samples, "billing_schedule_runs_total", kind="closing-reminder", result="ok") == 1
    assert (
        value(
            samples,
            "billing_commands_total",
            provider="billing",
            command="/billing schedule run",
            outcome="ok",
        )
        == 1
    )


async def test_a_schedule_run_that_breaks_is_audited_and_counted(database_url: str) -> None:
    from bot.storage import store

    await store.upgrade(database_url)
    engine = store.make_engine(database_url)
    metrics = Metrics()
    metrics.know(commands=(), providers=("billing",), kinds=("closing-reminder",))
    audit = AuditLog(engine, listeners=[metrics.on_audit])

    async def broken(schedule: Schedule, due: datetime | None) -> None:
        raise RuntimeError("boom")

    scheduler = Scheduler(ScheduleStore(engine, tz=ZoneInfo("UTC")), run=broken, audit=audit)
    try:
        schedule = await scheduler.store.add(
            kind="closing-reminder", cron="0 9 1 * *", args={}, channel="C1", created_by="U0ADMIN"
        )
        assert schedule.next_run_at is not None
        first = schedule.next_run_at + timedelta(minutes=1)
        missed = datetime.now(UTC) + timedelta(days=400)  # long past its grace: missed
        scheduler.clock = lambda: first
        assert await scheduler.tick() == 1
        scheduler.clock = lambda: missed
        assert await scheduler.tick() == 0
        rows = await audit.recent(5)
    finally:
        await scheduler.stop()  # PostgreSQL: give up the leader's connection
        await engine.dispose()
    _, samples = await scrape(metrics)
    assert (
        value(samples, "billing_schedule_runs_total", kind="closing-reminder", result="error") == 1
    )
    assert (
        value(samples, "billing_schedule_runs_total", kind="closing-reminder", result="missed") == 1
    )
    assert [r["outcome"] for r in rows] == ["skipped", "error"]
    assert "reference" in rows[1]["detail"] and "boom" not in rows[1]["detail"]


async def test_socket_mode_serves_metrics_on_a_port_of_its_own() -> None:
    metrics = Metrics()
    metrics.know(commands=("/smsc invoice get",), providers=("smsc",), kinds=())
    metrics.on_audit(
        Entry(
            user_id="U1",
            channel="C1",
            command="/smsc invoice get",
            args={},
            decision="ran",
            outcome="done",
            provider="smsc",
        ),
        1,
    )
    exporter = await serve_metrics(metrics, host="127.0.0.1", port=0)
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{exporter.port}/metrics")
    finally:
        await exporter.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples = parse(answer.text)
    assert (
        value(
            samples,
            "billing_commands_total",
            provider="smsc",
            command="/smsc invoice get",
            outcome="ok",
        )
        == 1
    )


# --- one log line per command ------------------------------------------------------------------


def command_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.commands"]


async def test_each_command_is_one_info_line_with_its_fields(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.commands")
    await run(runtime, "/invoicexpress sequences", "U0VIEWER")
    [record] = command_records(caplog)
    rows = await runtime.audit.recent(1)
    audit_id = rows[0]["id"]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert message.startswith("/invoicexpress sequences by U0VIEWER: ran, done in ")
    assert message.endswith(f" ms (audit #{audit_id})")
    fields: dict[str, Any] = json.loads(JsonFormatter().format(record))
    assert fields["message"] == message
    assert fields["level"] == "INFO" and fields["logger"] == "bot.commands"
    assert {k: fields[k] for k in ("user", "command", "decision", "outcome", "provider")} == {
        "user": "U0VIEWER",
        "command": "/invoicexpress sequences",
        "decision": "ran",
        "outcome": "done",
        "provider": "invoicexpress",
    }
    assert fields["audit_id"] == audit_id
    assert isinstance(fields["duration_ms"], int)
    assert "detail" not in fields


async def test_a_failure_line_says_why_with_secrets_masked(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.commands")
    sandbox = sandbox_of(runtime, "invoicexpress")
    sandbox.control.echo_secrets = True  # the error quotes the API key the request carried
    await run(runtime, "/invoicexpress sequences", "U0VIEWER")
    [record] = command_records(caplog)
    text = logging.Formatter("%(message)s").format(record)
    line = JsonFormatter().format(record)
    fields = json.loads(line)
    assert fields["outcome"] == "failed"
    assert fields["detail"] and fields["detail"] in text
    assert SANDBOX_API_KEY not in text and SANDBOX_API_KEY not in line


def test_json_lines_redact_every_field() -> None:
    from commands.secrets import register_secret

    register_secret("tok-0123456789-abcdef")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.detail = "failed with tok-0123456789-abcdef"
    record.url = "https://api.example/x?api_key=visible123"
    line = JsonFormatter().format(record)
    assert "tok-0123456789-abcdef" not in line and "visible123" not in line
    assert json.loads(line)["detail"] == "failed with ••••••"


async def test_a_listener_that_breaks_loses_no_audit_row(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.storage import store

    await store.upgrade(database_url)
    engine = store.make_engine(database_url)
    seen: list[int | None] = []

    def broken(entry: Entry, audit_id: int | None) -> None:
        raise RuntimeError("listener bug")

    audit = AuditLog(engine, listeners=[broken, lambda entry, audit_id: seen.append(audit_id)])
    entry = Entry(user_id="U1", channel="C1", command="/x", args={}, decision="ran", outcome="done")
    try:
        await audit.record(entry)
        rows = await audit.recent(5)
    finally:
        await engine.dispose()
    assert [r["command"] for r in rows] == ["/x"]
    assert seen == [rows[0]["id"]]  # the next listener still ran
    assert any("an audit listener failed" in r.getMessage() for r in caplog.records)


async def edit_first_audit_row(runtime: Runtime) -> None:
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE audit SET detail = 'changed' WHERE seq = 1"))


async def test_the_audit_chain_gauge_shows_the_background_check_and_hashes_nothing(
    runtime: Runtime,
) -> None:
    await run(runtime, "/invoicexpress sequences", "U1")
    text, samples = await scrape(runtime.metrics)
    assert "# TYPE billing_audit_chain_ok gauge" in text
    assert value(samples, "billing_audit_chain_ok") == 1.0
    await edit_first_audit_row(runtime)
    _, samples = await scrape(runtime.metrics)
    assert value(samples, "billing_audit_chain_ok") == 1.0  # a scrape reads, never re-hashes
    await runtime.chain.step()
    _, samples = await scrape(runtime.metrics)
    assert ("billing_audit_chain_ok", frozenset()) in samples
    assert value(samples, "billing_audit_chain_ok") == 0.0


async def test_the_sweeper_checks_the_audit_chain(runtime: Runtime) -> None:
    await run(runtime, "/invoicexpress sequences", "U1")
    await edit_first_audit_row(runtime)
    runtime.start_sweeper(every=0.05)
    await wait_until(lambda: not runtime.chain.ok, "the sweeper to find the edited row")
    assert str(runtime.chain.broken) == "row 1: edited (its contents do not match its hash)"


async def test_a_failing_chain_check_is_logged_and_the_sweeps_go_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    steps: list[int] = []

    async def unreadable() -> None:
        steps.append(1)
        raise ConnectionRefusedError("the database went away")

    monkeypatch.setattr(runtime.chain, "step", unreadable)
    with caplog.at_level(logging.ERROR, logger="bot.runtime"):
        runtime.start_sweeper(every=0.01)
        await wait_until(lambda: len(steps) >= 2, "a second sweep after the failed check")
    assert "the audit chain check failed" in [r.getMessage() for r in caplog.records]
    assert runtime.chain.ok  # a check that could not read found nothing
