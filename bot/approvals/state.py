"""The two-person rule as a state machine in the database.

    pending ──approve(s)──► executing ──► done | failed | unknown ──resolve──► (done | not done)
       │                       │
       ├──reject──► rejected   └─(runner died / answer lost)──► unknown   (never retried)
       ├──ceiling at run time──► failed
       └──TTL────► expired

Every transition is one conditional UPDATE (`… WHERE status = 'pending' …`); whoever's UPDATE
changes the row owns the transition, so an approval executes once whatever the double clicks,
Slack retries, concurrent approvers or replicas. A request may need several approvals (a
policy's rule): each is a row of `approval_votes`, one per person, and the claim's UPDATE also
requires that enough of them exist, so only the last approval needed runs it. An executing row
carries its runner (host:pid:boot) and a heartbeat; a row whose runner is gone is declared
`unknown`, and a person may later settle an unknown outcome as done or not done.
"""

from __future__ import annotations

import enum
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.store import approval_votes, approvals, single_statements, utcnow
from bot.surface import MessageRef
from commands.base import Reply

BOOT = uuid.uuid4().hex[:8]
RUNNER = f"{socket.gethostname()}:{os.getpid()}:{BOOT}"


class Status(enum.StrEnum):
    PENDING = "pending"
    EXECUTING = "executing"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Claim(enum.Enum):
    WON = "won"
    WAITING = "waiting for more approvals"
    ALREADY_VOTED = "already approved by this person"
    REFUSED = "refused at run time"
    NOT_FOUND = "not found"
    OWN_REQUEST = "own request"
    EXPIRED = "expired"
    DECIDED = "already decided"


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the status it leaves, a one-line summary, and the reply to show."""

    status: Status
    summary: str
    reply: Reply | None = None
    provider_status: int | None = None


@dataclass(frozen=True, kw_only=True)
class Approval:
    id: int
    command_line: str
    command_path: str
    provider: str
    args: dict[str, str]
    description: str
    requester: str
    origin: str
    channel: str
    message_ts: str | None
    status: Status
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    outcome: str | None
    runner: str | None
    heartbeat_at: datetime | None
    approve_label: str
    reject_label: str
    snooze_hours: int | None
    approvals_needed: int = 1
    approver_role: str | None = None
    rules: str | None = None
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolution_reason: str | None = None
    notified_at: datetime | None = None
    reminded_at: datetime | None = None

    @property
    def unresolved(self) -> bool:
        """An unknown outcome nobody has settled yet."""
        return self.status is Status.UNKNOWN and self.resolution is None

    @property
    def ref(self) -> MessageRef | None:
        return MessageRef(self.channel, self.message_ts) if self.message_ts else None

    @classmethod
    def from_row(cls, row: Any) -> Approval:
        import json

        data = dict(row)
        # A row written by a replica older than migration 0003 has only the preview, which is
        # exactly what its card showed.
        data["args"] = json.loads(data["args"] or data["args_preview"])
        data.pop("args_preview")
        data["status"] = Status(data["status"])
        data.pop("finished_at", None)
        data.pop("shown_at", None)
        return cls(**data)


class Approvals:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        ttl: timedelta,
        runner: str = RUNNER,
        clock: Any = utcnow,
    ) -> None:
        self.engine = engine
        # For a transaction of one statement (a read, a heartbeat, a finish): on PostgreSQL
        # without BEGIN and COMMIT around it (bot/storage/store.py, `single_statements`).
        self.single = single_statements(engine)
        self.ttl = ttl
        self.runner = runner
        self.clock = clock
        # Runs this object claimed and has not finished: its own rows the sweeper leaves alone.
        # A row of its runner that is not among them was left by a write that failed (the
        # database away as the claim committed or the answer was recorded): it is settled as
        # unknown like any other once its heartbeat is stale.
        self._running: set[int] = set()

    def in_flight(self, approval_id: int) -> bool:
        return approval_id in self._running

    def let_go(self, approval_id: int) -> None:
        """This process's run of it is over without a finish the database took: its answer is
        kept (bot/approvals/late.py), for the replay or the sweeper to record."""
        self._running.discard(approval_id)

    async def create(
        self,
        *,
        command_line: str,
        command_path: str,
        provider: str,
        args: dict[str, str],
        description: str,
        requester: str,
        channel: str,
        origin: str,
        approve_label: str,
        reject_label: str,
        snooze_hours: int | None,
        approvals_needed: int,
        approver_role: str | None,
        rules: str | None,
    ) -> Approval:
        import json

        now = self.clock()
        values = {
            "command_line": command_line,
            "command_path": command_path,
            "provider": provider,
            "args": json.dumps(args, ensure_ascii=False),
            "args_preview": json.dumps(args, ensure_ascii=False),
            "description": description,
            "requester": requester,
            "origin": origin,
            "channel": channel,
            "status": Status.PENDING.value,
            "created_at": now,
            "expires_at": now + self.ttl,
            "approve_label": approve_label,
            "reject_label": reject_label,
            "snooze_hours": snooze_hours,
            "approvals_needed": approvals_needed,
            "approver_role": approver_role,
            "rules": rules,
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(approvals.insert().values(**values).returning(approvals))
            return Approval.from_row(result.mappings().one())

    async def get(self, approval_id: int) -> Approval | None:
        async with self.single.connect() as conn:
            row = (
                (await conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)))
                .mappings()
                .first()
            )
        return Approval.from_row(row) if row else None

    async def attach_message(self, approval_id: int, ref: MessageRef) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                approvals.update()
                .where(approvals.c.id == approval_id)
                .values(message_ts=ref.ts, channel=ref.channel)
            )

    async def open(self, limit: int | None = 50) -> list[Approval]:
        """Pending requests not yet expired, oldest first; `limit` None: all of them."""
        query = (
            sa.select(approvals)
            .where(approvals.c.status == Status.PENDING.value)
            .where(approvals.c.expires_at > self.clock())
            .order_by(approvals.c.id)
            .limit(limit)
        )
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Approval.from_row(r) for r in rows]

    async def claim(
        self,
        approval_id: int,
        approver: str,
        *,
        guard: Guard | None = None,
        reason: str | None = None,
    ) -> tuple[Claim, Approval | None]:
        """Record `approver`'s approval; the one that completes the approvals needed moves the
        request pending → executing, atomically. Never the requester's own.

        `guard` (ceilings) is asked inside the same transaction, one final claim at a time
        across every replica: a refusal moves the request to failed instead. `reason` is kept
        with this person's approval (a rule may ask for one)."""
        claim, row = await self._claim(approval_id, approver, guard, reason)
        if claim is Claim.WON:  # committed, so this process runs it (`in_flight`)
            self._running.add(approval_id)
        return claim, row

    async def _claim(
        self, approval_id: int, approver: str, guard: Guard | None, reason: str | None
    ) -> tuple[Claim, Approval | None]:
        now = self.clock()
        open_request = sa.and_(
            approvals.c.id == approval_id,
            approvals.c.status == Status.PENDING.value,
            approvals.c.requester != approver,
            approvals.c.expires_at > now,
        )
        if guard is None and (won := await self._claim_alone(open_request, approver, reason)):
            return Claim.WON, won
        async with self.engine.begin() as conn:
            # FOR UPDATE: concurrent approvals of one request count their votes in turn, so two
            # final votes cannot each count only themselves (SQLite: the vote's INSERT waits).
            needed = await conn.scalar(
                sa.select(approvals.c.approvals_needed).where(open_request).with_for_update()
            )
            new_vote = needed is not None and await _vote(conn, approval_id, approver, now, reason)
            votes = sa.select(sa.func.count()).where(approval_votes.c.approval_id == approval_id)
            count = int((await conn.execute(votes)).scalar_one())
            if needed is not None and count >= needed and guard is not None:
                # One guarded final claim at a time. On SQLite the vote's INSERT above already
                # holds the database's single write lock until this transaction ends (for every
                # process); PostgreSQL takes a lock of its own, held until commit.
                if conn.dialect.name == "postgresql":
                    lock = sa.text("SELECT pg_advisory_xact_lock(:key)")
                    await conn.execute(lock, {"key": GUARD_LOCK})
                current = await _row(conn, approval_id)
                assert current is not None  # FOR UPDATE found it: rows are never deleted
                refusal = await guard(conn, current)
                if refusal is not None:
                    failed = (
                        approvals.update()
                        .where(open_request)
                        .values(
                            status=Status.FAILED.value,
                            decided_by=approver,
                            decided_at=now,
                            outcome=f"not run: {refusal}"[:4000],
                            finished_at=now,
                        )
                    )
                    await conn.execute(failed)
                    return Claim.REFUSED, await _row(conn, approval_id)
            statement = (
                approvals.update()
                .where(open_request, approvals.c.approvals_needed <= count)
                .values(
                    status=Status.EXECUTING.value,
                    decided_by=approver,
                    decided_at=now,
                    runner=self.runner,
                    heartbeat_at=now,
                )
            )
            claimed = (await conn.execute(statement.returning(approvals))).mappings().first()
            if claimed is not None:
                return Claim.WON, Approval.from_row(claimed)
            # Judged as this transaction saw it: a concurrent approval that completes the request
            # just after this one commits does not turn this vote into "already decided".
            row = await _row(conn, approval_id)
        if row is not None and row.status is Status.PENDING and needed is not None:
            return (Claim.WAITING if new_vote else Claim.ALREADY_VOTED), row
        return self._why_not(row, approver)

    async def _claim_alone(
        self, open_request: sa.ColumnElement[bool], approver: str, reason: str | None
    ) -> Approval | None:
        """A request one approval completes, claimed by one conditional UPDATE (no votes to
        count, so nothing to lock first), then its vote; None: take the counting path."""
        now = self.clock()
        statement = (
            approvals.update()
            .where(open_request, approvals.c.approvals_needed == 1)
            .values(
                status=Status.EXECUTING.value,
                decided_by=approver,
                decided_at=now,
                runner=self.runner,
                heartbeat_at=now,
            )
            .returning(approvals)
        )
        async with self.engine.begin() as conn:
            claimed = (await conn.execute(statement)).mappings().first()
            if claimed is None:
                return None
            row = Approval.from_row(claimed)
            await _vote(conn, row.id, approver, now, reason)
        return row

    async def votes(self, approval_id: int) -> list[str]:
        """Who has approved a request so far, in order."""
        query = (
            sa.select(approval_votes.c.user_id)
            .where(approval_votes.c.approval_id == approval_id)
            .order_by(approval_votes.c.at, approval_votes.c.user_id)
        )
        async with self.single.connect() as conn:
            return [str(user) for user in (await conn.execute(query)).scalars()]

    async def ballot(self, approval_id: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Who has approved a request, and who gave which reason, in order: one read."""
        query = (
            sa.select(approval_votes.c.user_id, approval_votes.c.reason)
            .where(approval_votes.c.approval_id == approval_id)
            .order_by(approval_votes.c.at, approval_votes.c.user_id)
        )
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [str(u) for u, _ in rows], [(str(u), str(r)) for u, r in rows if r is not None]

    async def reasons(self, approval_id: int) -> list[tuple[str, str]]:
        """Who gave which reason for approving a request, in order."""
        query = (
            sa.select(approval_votes.c.user_id, approval_votes.c.reason)
            .where(approval_votes.c.approval_id == approval_id)
            .where(approval_votes.c.reason.is_not(None))
            .order_by(approval_votes.c.at, approval_votes.c.user_id)
        )
        async with self.single.connect() as conn:
            return [(str(user), str(why)) for user, why in (await conn.execute(query)).all()]

    async def resolve(
        self, approval_id: int, who: str, resolution: str, reason: str
    ) -> tuple[Claim, Approval | None]:
        """An unknown outcome, settled by a person (not its requester): done | not done."""
        now = self.clock()
        statement = (
            approvals.update()
            .where(
                approvals.c.id == approval_id,
                approvals.c.status == Status.UNKNOWN.value,
                approvals.c.resolution.is_(None),
                approvals.c.requester != who,
            )
            .values(
                resolution=resolution,
                resolved_by=who,
                resolved_at=now,
                resolution_reason=reason[:2000],
            )
        )
        async with self.engine.begin() as conn:
            changed = (await conn.execute(statement)).rowcount
        row = await self.get(approval_id)
        if changed == 1:
            return Claim.WON, row
        if row is not None and row.status is Status.UNKNOWN and row.requester == who:
            return Claim.OWN_REQUEST, row
        if row is None:
            return Claim.NOT_FOUND, None
        return Claim.DECIDED, row

    async def unresolved(self, limit: int = 50) -> list[Approval]:
        query = (
            sa.select(approvals)
            .where(approvals.c.status == Status.UNKNOWN.value, approvals.c.resolution.is_(None))
            .order_by(approvals.c.id)
            .limit(limit)
        )
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Approval.from_row(r) for r in rows]

    def _why_not(self, row: Approval | None, approver: str | None) -> tuple[Claim, Approval | None]:
        if row is None:
            return Claim.NOT_FOUND, None
        if row.status is Status.PENDING and row.expires_at <= self.clock():
            return Claim.EXPIRED, row
        if row.status is Status.PENDING and approver is not None and row.requester == approver:
            return Claim.OWN_REQUEST, row
        if row.status is Status.EXPIRED:
            return Claim.EXPIRED, row
        return Claim.DECIDED, row

    async def reject(
        self, approval_id: int, who: str, reason: str | None
    ) -> tuple[Claim, Approval | None]:
        """pending → rejected. The requester may withdraw their own request."""
        now = self.clock()
        statement = (
            approvals.update()
            .where(
                approvals.c.id == approval_id,
                approvals.c.status == Status.PENDING.value,
                approvals.c.expires_at > now,
            )
            .values(
                status=Status.REJECTED.value,
                decided_by=who,
                decided_at=now,
                reason=reason,
                finished_at=now,
            )
        )
        async with self.engine.begin() as conn:
            changed = (await conn.execute(statement)).rowcount
        row = await self.get(approval_id)
        if changed == 1:
            return Claim.WON, row
        return self._why_not(row, None)  # the requester may withdraw: no "own request" here

    async def heartbeat(self, approval_id: int) -> None:
        async with self.single.begin() as conn:
            await conn.execute(
                approvals.update()
                .where(approvals.c.id == approval_id, approvals.c.runner == self.runner)
                .values(heartbeat_at=self.clock())
            )

    async def finish(self, approval_id: int, status: Status, outcome: str) -> None:
        """executing → done | failed | unknown (only the runner that claimed it)."""
        self._running.discard(approval_id)  # failing, it is left to the spool or the sweeper
        async with self.single.begin() as conn:
            await conn.execute(
                approvals.update()
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == Status.EXECUTING.value,
                )
                .values(status=status.value, outcome=outcome[:4000], finished_at=self.clock())
            )

    async def expire_due(self) -> list[Approval]:
        """pending requests past their TTL → expired; returns the ones this call expired."""
        now = self.clock()
        async with self.single.connect() as conn:
            due = (
                (
                    await conn.execute(
                        sa.select(approvals.c.id).where(
                            approvals.c.status == Status.PENDING.value,
                            approvals.c.expires_at <= now,
                        )
                    )
                )
                .scalars()
                .all()
            )
        expired = []
        for approval_id in due:
            async with self.engine.begin() as conn:
                changed = (
                    await conn.execute(
                        approvals.update()
                        .where(
                            approvals.c.id == approval_id,
                            approvals.c.status == Status.PENDING.value,
                        )
                        .values(status=Status.EXPIRED.value, finished_at=now)
                    )
                ).rowcount
            if changed == 1 and (row := await self.get(approval_id)):
                expired.append(row)
        return expired

    async def orphaned(self, *, stale_after: timedelta) -> list[Approval]:
        """Executing rows whose runner is gone → unknown, oldest first. Never re-executed."""
        now = self.clock()
        query = (
            sa.select(approvals)
            .where(approvals.c.status == Status.EXECUTING.value)
            .order_by(approvals.c.id)
        )
        async with self.single.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        lost = []
        for row in (Approval.from_row(r) for r in rows):
            if row.runner == self.runner and row.id in self._running:
                continue
            if row.runner != self.runner and not _runner_gone(row, now, stale_after):
                continue
            if row.runner == self.runner and not _stale(row, now, stale_after):
                continue
            async with self.engine.begin() as conn:
                changed = (
                    await conn.execute(
                        approvals.update()
                        .where(
                            approvals.c.id == row.id,
                            approvals.c.status == Status.EXECUTING.value,
                            approvals.c.runner == row.runner,
                        )
                        .values(
                            status=Status.UNKNOWN.value,
                            outcome="the process running it stopped before the answer came",
                            finished_at=now,
                        )
                    )
                ).rowcount
            if changed == 1 and (updated := await self.get(row.id)):
                lost.append(updated)
        return lost


def _runner_gone(row: Approval, now: datetime, stale_after: timedelta) -> bool:
    host, _, rest = (row.runner or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        # Same host: a dead pid, or our own pid from an earlier boot (containers reuse pids).
        if pid == os.getpid() or not _alive(pid):
            return True
    return _stale(row, now, stale_after)


def _stale(row: Approval, now: datetime, stale_after: timedelta) -> bool:
    return row.heartbeat_at is None or now - row.heartbeat_at > stale_after


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A ceiling's final claims, across replicas on PostgreSQL: one transaction at a time.
GUARD_LOCK = 0x62696C6C  # "bill"

Guard = Callable[[AsyncConnection, Approval], Awaitable[str | None]]


async def _vote(
    conn: AsyncConnection, approval_id: int, user: str, at: datetime, reason: str | None
) -> bool:
    """One approval per person and request; False when this person had already approved
    ((approval_id, user_id) is the table's only key, so any conflict is exactly that one)."""
    values = {"approval_id": approval_id, "user_id": user, "at": at, "reason": reason}
    if conn.dialect.name == "postgresql":
        statement: Any = postgresql.insert(approval_votes).values(**values)
    else:
        statement = sqlite.insert(approval_votes).values(**values)
    return bool((await conn.execute(statement.on_conflict_do_nothing())).rowcount)


async def _row(conn: AsyncConnection, approval_id: int) -> Approval | None:
    found = await conn.execute(sa.select(approvals).where(approvals.c.id == approval_id))
    row = found.mappings().first()
    return Approval.from_row(row) if row else None
