"""Approving or rejecting a request already decided, in flight, expired, your own or missing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.approvals.state import Status
from bot.storage.store import approvals
from tests.support.drill import STALE, START, Bot, approve_in_flight


async def test_a_done_request_cannot_be_rejected(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    approved, _ = await bot.run("/billing approve 1", "U2")
    assert approved and await bot.status() == "done"

    rejected, surface = await bot.run('/billing reject 1 "too late"', "U3")
    assert not rejected
    assert surface.privates[-1] == "Approval #1 is already done by <@U2>; nothing was run again."
    row = await bot.row()
    assert (row["status"], row["decided_by"], row["reason"]) == ("done", "U2", None)
    assert "rejected" not in [r["decision"] for r in await bot.audit()]
    assert bot.client.calls == ["r1"]


async def test_a_run_in_flight_or_settled_as_unknown_cannot_be_rejected(bot: Bot) -> None:
    running = await approve_in_flight(bot)
    rejected, surface = await bot.run('/billing reject 1 "too late now"', "U3")
    assert not rejected
    assert "already executing by <@U2>" in surface.privates[-1]
    assert await bot.status() == "executing"

    bot.clock.advance(minutes=10)
    await bot.replica("other-host:4242:feedbeef").orphaned(stale_after=STALE)
    rejected, surface = await bot.run('/billing reject 1 "too late now"', "U3")
    assert not rejected
    assert "already unknown" in surface.privates[-1]
    bot.client.release.set()
    await running
    assert await bot.status() == "unknown"


async def test_an_expired_request_cannot_be_rejected_and_expires_once(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24)  # exactly the TTL: no longer open
    rejected, surface = await bot.run('/billing reject 1 "too late now"', "U2")
    assert not rejected
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert await bot.status() == "pending"  # until the sweeper marks it

    expired = await bot.replica("host-b:1:b").expire_due()
    assert [(a.id, a.status) for a in expired] == [(1, Status.EXPIRED)]
    assert (await bot.row())["finished_at"] == START + timedelta(hours=24)
    assert await bot.replica("host-b:1:b").expire_due() == []
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert bot.client.calls == []


async def test_a_request_still_open_can_be_rejected_up_to_its_expiry(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24, seconds=-1)
    rejected, _ = await bot.run('/billing reject 1 "not this month"', "U2")
    assert rejected
    row = await bot.row()
    assert (row["status"], row["decided_by"], row["reason"]) == ("rejected", "U2", "not this month")
    assert row["decided_at"] == row["finished_at"] == bot.clock.now
    assert await bot.replica("host-b:1:b").expire_due() == []
    assert bot.client.calls == []


@pytest.mark.parametrize("line", ["/billing approve 999", '/billing reject 999 "no such request"'])
async def test_an_id_that_does_not_exist_runs_nothing(bot: Bot, line: str) -> None:
    await bot.run("/drill move r1", "U1")
    done, surface = await bot.run(line, "U2")
    assert not done
    assert surface.privates == ["There is no approval request #999."]
    assert bot.client.calls == []
    assert await bot.status(1) == "pending"  # the request that does exist is untouched
    last = (await bot.audit())[-1]
    assert last["user_id"] == "U2" and last["command"] == line.split(" 999")[0]
    assert (last["outcome"], last["detail"]) == ("failed", "There is no approval request #999.")
    async with bot.runtime.engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(approvals))).scalar()
    assert count == 1


async def test_a_request_cannot_be_approved_at_its_expiry(bot: Bot) -> None:
    await bot.run("/drill move r1", "U1")
    bot.clock.advance(hours=24)
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 has expired; request it again."
    assert bot.client.calls == [] and await bot.status() == "pending"


async def test_your_own_request_once_decided_is_just_decided(bot: Bot) -> None:
    await bot.run("/drill move r1", "U2")  # an approver may request too
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved and "You requested #1 yourself" in surface.privates[-1]
    assert (await bot.run("/billing approve 1", "U3"))[0]
    approved, surface = await bot.run("/billing approve 1", "U2")
    assert not approved
    assert surface.privates[-1] == "Approval #1 is already done by <@U3>; nothing was run again."
