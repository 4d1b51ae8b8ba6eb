"""DatabaseHealth (bot/ops/database.py) on its own: what it takes for down, what it takes for
back (the write probe, not any success), and what it logs and shows each time."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Gauge

from bot.ops.database import DatabaseHealth


def cannot_open() -> sa.exc.OperationalError:
    """What SQLAlchemy raises when SQLite cannot open the file: a real driver error."""
    try:
        sqlite3.connect("file:/nonexistent/folder/bot.db?mode=rw", uri=True)
    except sqlite3.OperationalError as exc:
        return sa.exc.OperationalError("connect", None, exc)
    raise AssertionError("the file opened")


class Probe:
    """The write probe's answers, in turn; `during` runs while it probes."""

    def __init__(self, *answers: str | None, during: Callable[[], object] = lambda: None) -> None:
        self.answers = list(answers)
        self.during = during
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        self.during()
        return self.answers.pop(0)


def watched(probe: Probe) -> tuple[DatabaseHealth, CollectorRegistry]:
    registry = CollectorRegistry()
    gauge = Gauge("billing_database_up", "test", registry=registry)
    return DatabaseHealth(probe, gauge=gauge, clock=lambda: 0.0), registry


def up(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("billing_database_up")


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "bot.ops.database"]


async def test_other_failures_are_not_the_database_and_change_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health, registry = watched(Probe())

    assert health.failed(ValueError("a bug"), where="the sweeper") is False
    assert not health.down and up(registry) == 1.0 and logged(caplog) == []


async def test_going_down_is_one_warning_with_the_reason_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health, registry = watched(Probe())

    for where in ("the scheduler", "the outbox worker", "the scheduler"):
        assert health.failed(cannot_open(), where=where) is True

    [record] = [r for r in caplog.records if r.name == "bot.ops.database"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "unable to open database file" in record.getMessage()
    assert "seen by the scheduler" in record.getMessage()
    assert health.down and health.failures == 3 and up(registry) == 0.0


async def test_it_is_back_when_the_write_probe_passes_not_when_a_read_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    probe = Probe("not writable", None)
    health, registry = watched(probe)
    health.failed(cannot_open(), where="the outbox worker")

    await health.ok(where="the outbox worker")  # a read worked; the probe says writes do not
    still = (health.down, up(registry))
    await health.ok(where="the sweeper")
    await health.ok(where="the sweeper")  # up already: no probe, nothing logged

    assert still == (True, 0.0)
    assert (health.down, up(registry), probe.calls) == (False, 1.0, 2)
    assert logged(caplog)[1:] == [
        (
            logging.INFO,
            "the database is back (seen by the sweeper) after 0 s down; 2 database calls "
            "failed meanwhile",
        )
    ]


async def test_a_failure_during_the_probe_keeps_it_down() -> None:
    """A probe begun before a failure was reported is stale: it cannot call the outage over."""
    health, registry = watched(Probe(None, None))
    probe = Probe(None, during=lambda: health.failed(cannot_open(), where="a Slack request"))
    health.probe = probe
    health.failed(cannot_open(), where="the scheduler")

    await health.ok(where="the scheduler")

    assert health.down and up(registry) == 0.0


async def test_readiness_asks_the_probe_and_reports_either_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    health, registry = watched(Probe("unreachable", None))

    down = await health.check()
    during = (health.down, up(registry))
    back = await health.check()

    assert (down, during) == ("unreachable", (True, 0.0))
    assert (back, health.down, up(registry)) == (None, False, 1.0)
    assert [level for level, _ in logged(caplog)] == [logging.WARNING, logging.INFO]


async def test_a_probe_that_raises_is_the_database_away_not_an_error() -> None:
    async def raising() -> str | None:
        raise cannot_open()

    registry = CollectorRegistry()
    health = DatabaseHealth(raising, gauge=Gauge("billing_database_up", "t", registry=registry))

    problem = await health.check()

    assert problem == "OperationalError: unable to open database file"
    assert health.down and up(registry) == 0.0
