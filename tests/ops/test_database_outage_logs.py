"""An outage is logged once, not once per round: across several scheduler ticks, outbox
worker rounds and sweeps with the database unreachable there is one WARNING (the reason, no
traceback), one INFO when it is back, and `billing_database_up` goes 0 then 1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.runtime import Runtime
from bot.slack.outbox import Outbox
from tests.support.e2e import wait_until
from tests.support.outage import Unreachable

OpenBot = Callable[..., Awaitable[Runtime]]
ROUNDS = 4


@pytest.fixture
async def unreachable(database_url: str, tmp_path: Path) -> AsyncIterator[Unreachable]:
    database = Unreachable(database_url, tmp_path)
    try:
        yield database
    finally:
        database.close()


def up(runtime: Runtime) -> float | None:
    return runtime.metrics.registry.get_sample_value("billing_database_up")


def loud(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("bot")]


@contextlib.asynccontextmanager
async def outage(runtime: Runtime, database: Unreachable) -> AsyncIterator[None]:
    database.cut()
    await runtime.engine.dispose()  # what a restart of the connections would find
    try:
        yield
    finally:
        database.mend()


async def rounds(runtime: Runtime, more: int) -> None:
    """Wait until `more` further database failures were reported (each loop round is one)."""
    start = runtime.health.failures
    await wait_until(lambda: runtime.health.failures >= start + more, f"{more} failed rounds")


async def test_scheduler_ticks_log_an_outage_once(
    unreachable: Unreachable, open_bot: OpenBot, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await open_bot(database_url=unreachable.url)
    caplog.set_level(logging.INFO)
    before = up(runtime)
    async with outage(runtime, unreachable):
        for _ in range(ROUNDS):
            await runtime.scheduler._tick_job()
        during = up(runtime)
    await runtime.scheduler._tick_job()  # the first tick after: the write probe finds it back
    back = [r for r in caplog.records if "database is back" in r.getMessage()]

    assert (before, during, up(runtime)) == (1.0, 0.0, 1.0)
    [warning] = loud(caplog)
    assert warning.name == "bot.ops.database" and warning.exc_info is None
    assert "seen by the scheduler" in warning.getMessage()
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert f"{ROUNDS} database calls failed" in back[0].getMessage()
    assert not runtime.health.down


async def test_outbox_rounds_and_sweeps_log_an_outage_once(
    unreachable: Unreachable, open_bot: OpenBot, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await open_bot(database_url=unreachable.url)
    outbox = Outbox(
        runtime.engine, AsyncWebClient(base_url="http://127.0.0.1:9/"), health=runtime.health
    )
    caplog.set_level(logging.INFO)
    worker = asyncio.ensure_future(outbox.run(0.01))
    runtime.start_sweeper(0.01)
    try:
        async with outage(runtime, unreachable):
            await rounds(runtime, 2 * ROUNDS)
            during = up(runtime)
            seen_by = {r.getMessage() for r in loud(caplog)}
        await wait_until(lambda: not runtime.health.down, "the database to be back")
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        await outbox.http.aclose()
    back = [r for r in caplog.records if "database is back" in r.getMessage()]

    assert (during, up(runtime)) == (0.0, 1.0)
    [warning] = loud(caplog)
    assert warning.name == "bot.ops.database" and warning.exc_info is None
    assert len(seen_by) == 1
    assert len(back) == 1 and back[0].levelno == logging.INFO
