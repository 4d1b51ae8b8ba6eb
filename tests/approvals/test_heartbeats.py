"""Heartbeats and orphaned runs: which runner is gone, and what no late runner may overwrite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.approvals.state import Claim, Status
from bot.storage.store import approvals
from tests.support.drill import LOST, STALE, START, Bot, approve_in_flight, eventually


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


@pytest.fixture
def live() -> Iterator[subprocess.Popen[bytes]]:
    """A process of ours that lives until `end(live)` (never one we did not start: a broken
    liveness check could signal it). It takes back the default action of SIGHUP, which a
    parent started under `nohup` would otherwise pass on as ignored, hiding a stray signal."""
    script = "import signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        yield child
    finally:
        end(child)


def end(child: subprocess.Popen[bytes]) -> int:
    """Let the process finish; its exit status (negative: the signal that killed it)."""
    assert child.stdin is not None
    if not child.stdin.closed:
        child.stdin.close()
    return child.wait(timeout=60)


async def test_a_late_runner_does_not_overwrite_unknown(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    # Another replica decides this run's process is gone (same host, same pid from its point of
    # view as a restarted container) and settles it as unknown while the call is still out.
    other = bot.replica("other-host:4242:feedbeef")
    bot.clock.advance(minutes=10)
    settled = await other.orphaned(stale_after=STALE)
    assert [(a.id, a.status) for a in settled] == [(1, Status.UNKNOWN)]

    bot.client.release.set()  # the answer comes back after all
    await running
    row = await bot.row()
    assert row["status"] == "unknown"  # not rewritten to "done" by the late runner
    assert row["outcome"] == LOST
    assert bot.client.calls == ["r1"]


async def test_finish_only_settles_a_run_that_is_executing(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")

    await runner.finish(1, Status.DONE, "never claimed")  # pending: nothing to finish
    assert await bot.status(1) == "pending"
    assert (await bot.row(1))["outcome"] is None

    claim, _ = await runner.claim(2, "U2")
    assert claim is Claim.WON
    await runner.finish(2, Status.FAILED, "refused by the provider")
    await runner.finish(2, Status.DONE, "a second finish")  # settled stays settled
    row = await bot.row(2)
    assert (row["status"], row["outcome"]) == ("failed", "refused by the provider")
    assert row["finished_at"] == START


async def test_the_sweeper_leaves_this_process_s_own_live_run_alone(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    bot.clock.advance(hours=1)  # far past any staleness: only "it is ours" protects it
    await bot.runtime.flow.sweep()
    assert await bot.status() == "executing"
    assert bot.runtime.system_surface("C1").updates == []  # type: ignore[attr-defined]

    bot.client.release.set()
    assert await running
    assert await bot.status() == "done"
    assert bot.client.calls == ["r1"]
    decisions = [(r["user_id"], r["decision"]) for r in await bot.audit()]
    assert ("system", "recovered") not in decisions


async def test_a_replica_never_settles_its_own_runner_s_rows(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    mine = bot.replica("host-a:101:aaaa")
    await mine.claim(1, "U2")
    bot.clock.advance(hours=3)
    assert await mine.orphaned(stale_after=STALE) == []
    assert await bot.status() == "executing"


async def test_a_runner_on_another_host_is_gone_only_once_its_heartbeat_is_stale(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    runner = bot.replica("host-a:101:aaaa")
    sweeper = bot.replica("host-b:202:bbbb")
    await runner.claim(1, "U2")

    bot.clock.advance(minutes=1)
    assert await sweeper.orphaned(stale_after=STALE) == []
    bot.clock.advance(minutes=1)  # exactly the threshold: not yet stale
    assert await sweeper.orphaned(stale_after=STALE) == []
    assert await bot.status() == "executing"

    bot.clock.advance(seconds=1)
    settled = await sweeper.orphaned(stale_after=STALE)
    assert [(a.id, a.status, a.outcome) for a in settled] == [(1, Status.UNKNOWN, LOST)]
    row = await bot.row()
    assert (row["status"], row["outcome"]) == ("unknown", LOST)
    assert row["finished_at"] == START + STALE + timedelta(seconds=1)
    assert await sweeper.orphaned(stale_after=STALE) == []  # settled once


async def test_a_dead_process_on_this_host_is_gone_at_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{dead_pid()}:cafe0001").claim(1, "U2")
    sweeper = bot.replica("host-b:202:cafe0002")
    settled = await sweeper.orphaned(stale_after=STALE)  # heartbeat fresh: the pid decides
    assert [a.id for a in settled] == [1]
    assert await bot.status() == "unknown"


async def test_an_earlier_boot_of_this_pid_is_gone_at_once(bot: Bot) -> None:
    """Containers reuse pids: our pid under another boot id is a previous life of ours."""
    await bot.run("/drill move r1", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{os.getpid()}:oldboot1").claim(1, "U2")
    settled = await bot.replica(f"{host}:{os.getpid()}:newboot2").orphaned(stale_after=STALE)
    assert [a.id for a in settled] == [1]


async def test_a_live_process_on_this_host_with_a_fresh_heartbeat_is_not_gone(
    bot: Bot, live: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    host = socket.gethostname()
    await bot.replica(f"{host}:{live.pid}:cafe0003").claim(1, "U2")
    sweeper = bot.replica(f"{host}:{os.getpid()}:cafe0004")
    assert await sweeper.orphaned(stale_after=STALE) == []
    assert end(live) == 0  # asking whether it lives sent it no signal

    # A process we may not signal (another user's) is alive too.
    await bot.replica(f"{host}:1:cafe0005").claim(2, "U2")

    def not_permitted(pid: int, signal: int) -> None:
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", not_permitted)
    assert await sweeper.orphaned(stale_after=STALE) == []
    monkeypatch.undo()
    assert [await bot.status(1), await bot.status(2)] == ["executing", "executing"]


async def test_a_runner_without_a_heartbeat_is_gone(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.replica("host-a:101:aaaa").claim(1, "U2")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(heartbeat_at=None))
    assert [a.id for a in await bot.replica("host-b:1:b").orphaned(stale_after=STALE)] == [1]


async def test_a_heartbeat_keeps_a_run_fresh_and_only_its_runner_beats(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    runner = bot.replica("host-a:101:aaaa")
    sweeper = bot.replica("host-b:202:bbbb")
    await runner.claim(1, "U2")

    bot.clock.advance(seconds=90)
    await runner.heartbeat(1)
    assert (await bot.row())["heartbeat_at"] == START + timedelta(seconds=90)
    bot.clock.advance(seconds=60)  # 150 s after the claim, 60 s after the beat
    assert await sweeper.orphaned(stale_after=STALE) == []

    bot.clock.advance(seconds=50)
    await sweeper.heartbeat(1)  # not its run: changes nothing
    assert (await bot.row())["heartbeat_at"] == START + timedelta(seconds=90)
    bot.clock.advance(seconds=11)  # 131 s after the runner's last beat
    assert [a.id for a in await sweeper.orphaned(stale_after=STALE)] == [1]


async def test_a_run_in_flight_keeps_beating(bot: Bot) -> None:
    bot.runtime.executor.heartbeat_every = 0.01
    running = await approve_in_flight(bot)
    claimed = await bot.row()
    assert claimed["heartbeat_at"] == START

    bot.clock.advance(minutes=5)

    async def beaten() -> bool:
        return bool((await bot.row())["heartbeat_at"] == bot.clock.now)

    await eventually(beaten, "the heartbeat of the run in flight")
    bot.client.release.set()
    assert await running
    assert await bot.status() == "done"
