"""The state machine's edges: listing, claims, one request per step, older replicas' rows."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.approvals.state import Claim, Status
from bot.storage.store import approvals
from tests.support import move_on_disk
from tests.support.drill import START, Bot


async def test_open_lists_open_requests_oldest_first_fifty_at_most(bot: Bot) -> None:
    for n in range(53):
        await bot.run(f"/drill move r{n}", "U1")
    await bot.run("/billing approve 1", "U2")
    await bot.run('/billing reject 2 "not this one"', "U2")
    listed = bot.replica("host-b:1:b")
    await move_on_disk(bot.runtime.engine, 10)
    assert [a.id for a in await listed.open()] == list(range(3, 53))
    assert [a.id for a in await listed.open(limit=2)] == [3, 4]
    bot.clock.advance(hours=24)  # exactly the TTL: none is open any more
    assert await listed.open() == []


async def test_a_claim_records_who_when_and_which_runner(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(minutes=5)
    runner = bot.replica("host-a:101:aaaa")
    claim, row = await runner.claim(1, "U2")
    assert claim is Claim.WON and row is not None
    at = START + timedelta(minutes=5)
    assert (row.status, row.decided_by, row.decided_at) == (Status.EXECUTING, "U2", at)
    assert (row.runner, row.heartbeat_at) == ("host-a:101:aaaa", at)


async def test_each_step_touches_only_its_own_request(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    await bot.run("/drill move r2", "U1")
    runner = bot.replica("host-a:101:aaaa")
    await runner.claim(1, "U2")
    await runner.claim(2, "U3")
    bot.clock.advance(minutes=1)
    await runner.heartbeat(1)
    assert (await bot.row(1))["heartbeat_at"] == START + timedelta(minutes=1)
    assert (await bot.row(2))["heartbeat_at"] == START
    await runner.finish(1, Status.DONE, "x" * 5000)
    assert await bot.status(2) == "executing"
    assert (await bot.row(1))["outcome"] == "x" * 4000  # long outcomes are cut, not refused


async def test_a_row_still_reads_for_a_replica_older_than_stored_arguments(bot: Bot) -> None:
    await bot.run('/drill move "café ☕ = 5"', "U1")
    row = await bot.row()
    assert row["origin"] == "user"  # a typed request, not a schedule's
    assert row["args_preview"] == row["args"]
    assert json.loads(row["args_preview"]) == {"ref": "café ☕ = 5"}


async def test_a_request_written_by_an_older_replica_runs_what_its_card_showed(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    async with bot.runtime.engine.begin() as conn:
        await conn.execute(approvals.update().values(args=None))  # it knows only the preview
    assert (await bot.run("/billing approve 1", "U2"))[0]
    assert bot.client.calls == ["r1"]
