"""The state machine's votes, ceilings guard and settling of unknown outcomes, stepped directly.

`Approvals` is driven as each replica would drive it (one instance per runner, one database), on
SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL. Each test names what it protects: a
request runs only once its last needed approval is in, a guard's refusal is recorded as who
refused it and when, final claims under a guard take turns across replicas, and an unknown
outcome is settled once, by someone other than its requester, for that request only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.approvals.state import Approval, Approvals, Claim, Status
from bot.storage import store
from bot.storage.store import approval_votes, approvals
from tests.support import Clock, move_on_disk

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
TTL = timedelta(hours=24)


@dataclass
class Db:
    engine: AsyncEngine
    clock: Clock
    replicas: list[Approvals] = field(default_factory=list)

    def replica(self, runner: str = "host-a:1:aaaa") -> Approvals:
        return Approvals(self.engine, ttl=TTL, runner=runner, clock=self.clock)

    async def request(self, needed: int = 1, requester: str = "U1", ref: str = "r1") -> Approval:
        return await self.replica().create(
            command_line=f"/drill move {ref}",
            command_path="drill move",
            provider="drill",
            args={"ref": ref},
            description=f"move {ref}",
            requester=requester,
            channel="C1",
            origin="user",
            approve_label="Approve",
            reject_label="Reject",
            snooze_hours=None,
            approvals_needed=needed,
            approver_role=None,
            rules=None,
        )

    async def row(self, approval_id: int) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            query = sa.select(approvals).where(approvals.c.id == approval_id)
            return dict((await conn.execute(query)).mappings().one())

    async def votes(self) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            query = sa.select(approval_votes.c.approval_id, approval_votes.c.user_id)
            rows = (await conn.execute(query.order_by(*approval_votes.primary_key))).all()
        return [(int(a), str(u)) for a, u in rows]

    async def settle_unknown(self, approval_id: int) -> None:
        """Claim and finish a request as unknown (its answer was lost)."""
        claim, _ = await self.replica().claim(approval_id, "U2")
        assert claim is Claim.WON
        await self.replica().finish(approval_id, Status.UNKNOWN, "answer lost")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Db]:
    await store.upgrade(database_url)
    engine = store.make_engine(database_url)
    try:
        yield Db(engine, Clock(START))
    finally:
        await engine.dispose()


def refusing(text: str, calls: list[int]) -> Callable[[AsyncConnection, Approval], Awaitable[str]]:
    async def guard(conn: AsyncConnection, row: Approval) -> str:
        calls.append(row.id)
        return text

    return guard


# --- votes ---------------------------------------------------------------------------------------


async def test_each_approval_is_one_vote_and_only_the_last_needed_claims(db: Db) -> None:
    first = await db.request(needed=3)
    other = await db.request(needed=1, ref="r2")  # another request's needs never count here
    a = db.replica()
    assert (await a.claim(first.id, "U2"))[0] is Claim.WAITING
    assert (await a.claim(first.id, "U2"))[0] is Claim.ALREADY_VOTED
    claim, row = await a.claim(first.id, "U3")
    assert claim is Claim.WAITING and row is not None and row.status is Status.PENDING
    claim, row = await a.claim(first.id, "U4")
    assert claim is Claim.WON and row is not None and row.decided_by == "U4"
    assert await db.votes() == [(first.id, "U2"), (first.id, "U3"), (first.id, "U4")]
    assert (await db.row(other.id))["status"] == "pending"


async def test_a_refused_click_leaves_no_vote(db: Db) -> None:
    own = await db.request(needed=2, requester="U2")
    assert (await db.replica().claim(own.id, "U2"))[0] is Claim.OWN_REQUEST
    late = await db.request(needed=2, ref="r2")
    db.clock.advance(hours=24)
    assert (await db.replica().claim(late.id, "U3"))[0] is Claim.EXPIRED
    assert (await db.replica().claim(999, "U3"))[0] is Claim.NOT_FOUND
    assert await db.votes() == []


async def test_votes_are_listed_in_the_order_given_then_by_person(db: Db) -> None:
    asked = await db.request(needed=4)
    a = db.replica()
    await a.claim(asked.id, "U9")
    db.clock.advance(minutes=1)
    await a.claim(asked.id, "U7")  # U7 and U3 at the same moment: by person
    await a.claim(asked.id, "U3")
    assert await a.votes(asked.id) == ["U9", "U3", "U7"]
    assert await a.votes(999) == []


async def test_two_final_approvals_at_once_run_the_request_once(db: Db) -> None:
    for n in range(5):
        asked = await db.request(needed=2, ref=f"r{n}")
        results = await asyncio.gather(
            db.replica("host-a:1:aaaa").claim(asked.id, "U2"),
            db.replica("host-b:2:bbbb").claim(asked.id, "U3"),
        )
        assert sorted(c.value for c, _ in results) == ["waiting for more approvals", "won"]
        assert (await db.row(asked.id))["status"] == "executing"


# --- the guard (ceilings) ------------------------------------------------------------------------


async def test_a_guard_is_asked_only_by_the_last_needed_approval(db: Db) -> None:
    asked = await db.request(needed=2)
    calls: list[int] = []
    guard = refusing("over the ceiling", calls)
    claim, row = await db.replica().claim(asked.id, "U2", guard=guard)
    assert (claim, calls) == (Claim.WAITING, [])
    db.clock.advance(minutes=3)
    claim, row = await db.replica().claim(asked.id, "U3", guard=guard)
    assert (claim, calls) == (Claim.REFUSED, [asked.id])
    assert row is not None and row.status is Status.FAILED
    stored = await db.row(asked.id)
    at = START + timedelta(minutes=3)
    assert (stored["decided_by"], stored["decided_at"], stored["finished_at"]) == ("U3", at, at)
    assert stored["outcome"] == "not run: over the ceiling"
    assert stored["runner"] is None  # never claimed for a run


async def test_a_long_refusal_is_cut_not_refused(db: Db) -> None:
    asked = await db.request()
    claim, _ = await db.replica().claim(asked.id, "U2", guard=refusing("x" * 5000, []))
    assert claim is Claim.REFUSED
    assert (await db.row(asked.id))["outcome"] == ("not run: " + "x" * 5000)[:4000]


async def test_a_guard_that_allows_lets_the_claim_run(db: Db) -> None:
    asked = await db.request()

    async def allow(conn: AsyncConnection, row: Approval) -> None:
        assert row.id == asked.id and row.status is Status.PENDING

    claim, row = await db.replica().claim(asked.id, "U2", guard=allow)
    assert claim is Claim.WON and row is not None and row.status is Status.EXECUTING


async def test_guarded_final_claims_take_turns_across_replicas(db: Db) -> None:
    """While one replica's guard decides, another's guarded final claim waits for it to commit,
    so the second guard reads the first request as claimed (a ceiling counts it)."""
    first, second = await db.request(), await db.request(ref="r2")
    deciding, release = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def slow(conn: AsyncConnection, row: Approval) -> None:
        deciding.set()
        await release.wait()

    async def reads_first(conn: AsyncConnection, row: Approval) -> None:
        query = sa.select(approvals.c.status).where(approvals.c.id == first.id)
        seen.append(str(await conn.scalar(query)))

    a = asyncio.ensure_future(db.replica("host-a:1:aaaa").claim(first.id, "U2", guard=slow))
    await asyncio.wait_for(deciding.wait(), timeout=30)
    b = asyncio.ensure_future(db.replica("host-b:2:bbbb").claim(second.id, "U3", guard=reads_first))
    if db.engine.dialect.name == "postgresql":

        async def blocked_or_through() -> bool:
            return bool(seen) or await waiting_for_advisory_lock(db.engine)

        await until(blocked_or_through)
    else:
        await writes_are_locked_out(db.engine)
    assert seen == []  # the second guard has not run while the first decides
    release.set()
    assert (await a)[0] is Claim.WON
    assert (await b)[0] is Claim.WON
    assert seen == ["executing"]


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `condition` holds (the deadline only turns a hang into a failure)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not await condition():
        assert loop.time() < deadline, "gave up waiting"
        await asyncio.sleep(0.01)


async def waiting_for_advisory_lock(engine: AsyncEngine) -> bool:
    """Whether a session waits for an advisory lock in this test's database (pg_locks lists the
    whole server's, and tests running in parallel hold their own)."""
    async with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return bool(await conn.scalar(sa.text(query)))


async def writes_are_locked_out(engine: AsyncEngine) -> None:
    """SQLite: a writer that will not wait is turned away while the first guard decides."""
    impatient = sa.create_engine(engine.url.set(drivername="sqlite"), connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError, match="locked"), impatient.begin() as conn:
            conn.execute(sa.text("PRAGMA busy_timeout=0"))
            conn.execute(approval_votes.insert().values(approval_id=0, user_id="X", at=START))
    finally:
        impatient.dispose()


# --- unknown outcomes, settled ----------------------------------------------------------------


async def test_settling_an_unknown_records_who_when_and_why(db: Db) -> None:
    asked, untouched = await db.request(), await db.request(ref="r2")
    await db.settle_unknown(asked.id)
    await db.settle_unknown(untouched.id)
    db.clock.advance(minutes=7)
    claim, row = await db.replica().resolve(asked.id, "U3", "done", "y" * 3000)
    assert claim is Claim.WON and row is not None
    stored = await db.row(asked.id)
    assert (stored["resolution"], stored["resolved_by"]) == ("done", "U3")
    assert stored["resolved_at"] == START + timedelta(minutes=7)
    assert stored["resolution_reason"] == "y" * 2000
    assert (await db.row(untouched.id))["resolution"] is None  # only the request named


async def test_only_an_unsettled_unknown_can_be_settled(db: Db) -> None:
    done = await db.request()
    await db.replica().claim(done.id, "U2")
    await db.replica().finish(done.id, Status.DONE, "moved")
    claim, _ = await db.replica().resolve(done.id, "U3", "not done", "looked")
    assert claim is Claim.DECIDED
    assert (await db.row(done.id))["resolution"] is None

    unknown = await db.request(ref="r2")
    await db.settle_unknown(unknown.id)
    assert (await db.replica().resolve(unknown.id, "U1", "done", "mine"))[0] is Claim.OWN_REQUEST
    assert (await db.replica().resolve(unknown.id, "U3", "done", "seen"))[0] is Claim.WON
    claim, row = await db.replica().resolve(unknown.id, "U4", "not done", "again")
    assert claim is Claim.DECIDED and row is not None and row.resolution == "done"
    assert (await db.replica().resolve(999, "U3", "done", "x"))[0] is Claim.NOT_FOUND


async def test_unsettled_unknowns_are_listed_oldest_first_fifty_at_most(db: Db) -> None:
    ids = []
    for n in range(52):
        asked = await db.request(ref=f"r{n}")
        await db.settle_unknown(asked.id)
        ids.append(asked.id)
    await db.replica().resolve(ids[1], "U3", "done", "seen")
    await move_on_disk(db.engine, ids[0], ("done", "unknown"))
    listed = [a.id for a in await db.replica().unresolved()]
    assert listed == [ids[0], *ids[2:51]]
    assert [a.id for a in await db.replica().unresolved(limit=2)] == [ids[0], ids[2]]


# --- who claimed, who said why, and what a claim costs -------------------------------------------


async def test_the_last_needed_approval_claims_for_its_own_runner_at_that_time(db: Db) -> None:
    asked = await db.request(needed=2)
    assert (await db.replica().claim(asked.id, "U2"))[0] is Claim.WAITING
    db.clock.advance(minutes=5)
    claim, row = await db.replica("host-b:2:bbbb").claim(asked.id, "U3")
    assert claim is Claim.WON and row is not None
    stored = await db.row(asked.id)
    at = START + timedelta(minutes=5)
    assert (stored["runner"], stored["heartbeat_at"]) == ("host-b:2:bbbb", at)
    assert (row.runner, row.heartbeat_at) == ("host-b:2:bbbb", at)


async def test_votes_and_reasons_read_in_the_order_given_then_by_name(db: Db) -> None:
    asked = await db.request(needed=5)
    other = await db.request(needed=5, ref="r2")  # another request's votes are never read here
    a = db.replica()
    await a.claim(other.id, "U9", reason="for the other one")
    await a.claim(asked.id, "U5", reason="the later name")  # the same minute as U4's
    await a.claim(asked.id, "U4", reason="the same minute")
    db.clock.advance(minutes=1)
    await a.claim(asked.id, "U2", reason="a minute later")  # though its name sorts first
    await a.claim(asked.id, "U3")  # no reason
    order = ["U4", "U5", "U2", "U3"]
    said = [("U4", "the same minute"), ("U5", "the later name"), ("U2", "a minute later")]
    assert await a.votes(asked.id) == order
    assert await a.reasons(asked.id) == said
    assert await a.ballot(asked.id) == (order, said)


async def test_a_reason_given_with_the_only_approval_needed_is_kept_with_its_vote(db: Db) -> None:
    asked = await db.request(needed=1)
    claim, _ = await db.replica().claim(asked.id, "U2", reason="the invoice is due")
    assert claim is Claim.WON
    assert await db.replica().ballot(asked.id) == (["U2"], [("U2", "the invoice is due")])


async def test_a_request_one_approval_completes_is_claimed_in_two_statements(db: Db) -> None:
    """Its conditional UPDATE and its vote: no lock, no count (bench/approval_cost.py)."""
    asked = await db.request(needed=1)
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement.split(None, 2)[1] if statement.startswith("INSERT") else statement)

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        claim, row = await db.replica().claim(asked.id, "U2")
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert claim is Claim.WON and row is not None and row.status is Status.EXECUTING
    assert len(sent) == 2 and sent[0].startswith("UPDATE approvals SET"), sent
    assert sent[1] == "INTO", sent


async def test_a_run_let_go_is_swept_once_stale_and_one_still_running_never(db: Db) -> None:
    """A run that ended without a finish the database took (its answer kept) is this
    replica's own row but no longer in flight: swept like any other once its heartbeat is
    stale; a run still in flight never is, however old its heartbeat."""
    a = db.replica()
    ids = [(await db.request(ref=f"r{n}")).id for n in range(3)]
    for approval_id in ids:
        assert (await a.claim(approval_id, "U2"))[0] is Claim.WON
    running, fresh, stale = ids
    a.let_go(fresh)
    a.let_go(stale)
    db.clock.advance(minutes=10)
    await a.heartbeat(fresh)
    swept = await a.orphaned(stale_after=timedelta(minutes=2))
    assert [row.id for row in swept] == [stale]
    statuses = [(await db.row(approval_id))["status"] for approval_id in ids]
    assert statuses == ["executing", "executing", "unknown"]


async def test_the_sweep_settles_the_oldest_request_first(db: Db) -> None:
    """Whatever order the table hands rows back in (on PostgreSQL an updated row moves to the
    end of its table), stale runs are swept in the order they were requested."""
    a = db.replica()
    first, second = [(await db.request(ref=f"r{n}")).id for n in range(2)]
    for approval_id in (first, second):
        assert (await a.claim(approval_id, "U2"))[0] is Claim.WON
        a.let_go(approval_id)
    await a.heartbeat(first)  # its row is written again, after the second's
    db.clock.advance(minutes=10)
    swept = await a.orphaned(stale_after=timedelta(minutes=2))
    assert [row.id for row in swept] == [first, second]
