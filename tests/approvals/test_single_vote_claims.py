"""A request one approval completes is claimed by one conditional `UPDATE … RETURNING`, its vote
written in the same transaction: the first click wins alone across replicas, and a request
that is not open (expired, the requester's own, decided) is not claimed and gets no vote.

On SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.state import Approval, Approvals, Claim, Status
from bot.storage import store
from bot.storage.store import approval_votes
from tests.support import Clock

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await store.upgrade(database_url)
    engine = store.make_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", note)
    yield seen
    sa.event.remove(engine.sync_engine, "before_cursor_execute", note)


def replica(engine: AsyncEngine, clock: Clock, runner: str = "host-a:1:aaaa") -> Approvals:
    return Approvals(engine, ttl=TTL, runner=runner, clock=clock)


async def request(approvals: Approvals, requester: str = "U1") -> Approval:
    return await approvals.create(
        command_line="/drill move r1",
        command_path="drill move",
        provider="drill",
        args={"ref": "r1"},
        description="move r1",
        requester=requester,
        channel="C1",
        origin="user",
        approve_label="Approve",
        reject_label="Reject",
        snooze_hours=None,
        approvals_needed=1,
        approver_role=None,
        rules=None,
    )


async def votes(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    query = sa.select(approval_votes.c.user_id, approval_votes.c.reason)
    async with engine.connect() as conn:
        return [(str(u), r) for u, r in (await conn.execute(query)).all()]


async def test_the_claim_is_one_update_and_the_vote_with_its_reason(
    engine: AsyncEngine, clock: Clock, statements: list[str]
) -> None:
    approvals = replica(engine, clock)
    row = await request(approvals)
    statements.clear()
    claim, claimed = await approvals.claim(row.id, "U2", reason="invoice checked")
    assert claim is Claim.WON and claimed is not None
    assert (claimed.status, claimed.decided_by, claimed.runner) == (
        Status.EXECUTING,
        "U2",
        "host-a:1:aaaa",
    )
    verbs = [s.split(" ", 1)[0] for s in statements]
    assert verbs == ["UPDATE", "INSERT"]  # no read before or after
    assert await votes(engine) == [("U2", "invoice checked")]


async def test_two_replicas_clicking_at_once_claim_it_once(
    engine: AsyncEngine, clock: Clock
) -> None:
    row = await request(replica(engine, clock))
    a, b = replica(engine, clock, "host-a:1:aaaa"), replica(engine, clock, "host-b:1:bbbb")
    results = await asyncio.gather(a.claim(row.id, "U2"), b.claim(row.id, "U3"))
    claims = sorted(claim.value for claim, _ in results)
    assert claims == sorted([Claim.WON.value, Claim.DECIDED.value])
    [winner] = [found for claim, found in results if claim is Claim.WON]
    assert winner is not None
    assert await votes(engine) == [(winner.decided_by, None)]  # the loser left no vote


async def test_a_request_that_is_not_open_is_not_claimed_and_gets_no_vote(
    engine: AsyncEngine, clock: Clock
) -> None:
    approvals = replica(engine, clock)
    own = await request(approvals, requester="U2")
    assert (await approvals.claim(own.id, "U2"))[0] is Claim.OWN_REQUEST
    expired = await request(approvals)
    clock.advance(hours=24)  # TTL: it expires now
    assert (await approvals.claim(expired.id, "U2"))[0] is Claim.EXPIRED
    assert (await approvals.claim(9999, "U2"))[0] is Claim.NOT_FOUND
    assert await votes(engine) == []
