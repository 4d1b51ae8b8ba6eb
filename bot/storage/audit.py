"""The append-only audit log: every command, approval decision and scheduled run.

Arguments are stored as their redacted preview (secret fields masked, known secret values
replaced); the raw command text is never stored. Details are plain text (`detail_text`).
Listeners (`listen`) see each entry once it is written, with its row ID: the metrics and the one
log line per command come from here.

The rows form a hash chain (`bot/storage/chain.py`): an append reads the head and inserts the
next row in one transaction, one append at a time across replicas and processes (PostgreSQL: a
transaction advisory lock; SQLite: a lock in the process, then the database's write lock), and
the unique sequence number refuses a second row in one place whatever happens. `verify` walks
the whole chain; `ChainCheck` walks it a batch at a time in the background, for
`billing_audit_chain_ok`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.mrkdwn import plain
from bot.storage.chain import FIELDS, Break, Link, Verdict, Walk, seal
from bot.storage.store import audit, storable, utcnow
from commands.secrets import redact, redact_any
from commands.words import clip

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Entry:
    user_id: str
    channel: str
    command: str
    args: dict[str, str]
    decision: str  # ran, requested, approved, rejected, refused, invalid, expired, scheduled…
    outcome: str  # ok, error, unknown, pending, denied…
    detail: str = ""
    provider: str = ""
    provider_status: int | None = None
    duration_ms: int | None = None
    approval_id: int | None = None


DETAIL_LIMIT = 2000


def detail_text(detail: str) -> str:
    """A detail as the audit log keeps it: redacted, plain text (no Slack markup such as
    `*bold*`, backticks or `<url|text>`), on one line, cut between words with an ellipsis."""
    return clip(plain(redact(detail)), DETAIL_LIMIT)


# Sees each entry after it is written, with its audit row ID (None when writing failed).
Listener = Callable[[Entry, int | None], None]

# The PostgreSQL advisory lock every replica's append takes (transaction level), distinct from
# the scheduler's (bot/schedules/engine.py), the approvals' guard (bot/approvals/state.py) and
# the provider limits' (bot/storage/limits.py, digests of a key).
APPEND_LOCK = 0x61756474  # "audt"
VERIFY_BATCH = 5000


def fit(row: dict[str, Any]) -> dict[str, Any]:
    """Text cut to its column's length, as hashed and as every database keeps it (PostgreSQL
    refuses a longer varchar, or silently drops trailing spaces beyond its length)."""
    for column in audit.columns:
        length = getattr(column.type, "length", None)
        value = row.get(column.name)
        if length and isinstance(value, str):
            row[column.name] = value[:length]
    return row


# The append's statements, built once (building one and making its cache key cost as much CPU
# as running it; four appends an approval).
_LOCKS: dict[str, tuple[sa.TextClause, dict[str, Any]]] = {
    "postgresql": (sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK}),
    "sqlite": (sa.text("UPDATE audit SET seq = seq WHERE seq < :none"), {"none": 0}),
}
_HEAD = sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1)
_INSERT = audit.insert()


def _append_lock(dialect: str) -> tuple[sa.TextClause, dict[str, Any]]:
    """PostgreSQL: the appends' transaction advisory lock, held until commit. SQLite: a write
    that changes nothing takes the database's one write lock, held until commit (a read alone
    would not: another process could append between this one's read and its insert)."""
    return _LOCKS["postgresql" if dialect == "postgresql" else "sqlite"]


async def _head(conn: AsyncConnection) -> Link | None:
    found = (await conn.execute(_HEAD)).first()
    return Link(int(found.seq), str(found.hash)) if found is not None else None


async def _last_by(conn: AsyncConnection, until: datetime) -> Link | None:
    query = (
        sa.select(audit.c.seq, audit.c.hash)
        .where(audit.c.at <= until)
        .order_by(audit.c.seq.desc())
        .limit(1)
    )
    found = (await conn.execute(query)).first()
    return Link(int(found.seq), str(found.hash)) if found is not None else None


async def _insert(conn: AsyncConnection, row: dict[str, Any], head: Link | None) -> int | None:
    result = await conn.execute(_INSERT, {**row, **seal(row, head)})
    key = result.inserted_primary_key
    return int(key[0]) if key and key[0] is not None else None


# Writes, in the append's transaction, what goes with an entry about the row `Link` names, and
# returns the entry (None: append nothing). See `AuditLog.note`.
Note = Callable[[AsyncConnection, Link], Awaitable[Entry | None]]


class AuditLog:
    def __init__(self, engine: AsyncEngine, *, listeners: Sequence[Listener] = ()) -> None:
        self.engine = engine
        self.listeners = tuple(listeners)
        self._appending = asyncio.Lock()

    async def invalid(
        self, name: str, args: dict[str, str], user: str, channel: str, detail: str
    ) -> None:
        """Input that was refused before anything ran (`name` is the command, `/slash …`)."""
        await self.record(
            Entry(
                user_id=user,
                channel=channel,
                command=name,
                args=args,
                decision="invalid",
                outcome="rejected input",
                detail=detail,
                provider=name.removeprefix("/").split(" ")[0],
            )
        )

    async def record(self, entry: Entry, *, at: datetime | None = None) -> None:
        audit_id: int | None = None
        try:
            audit_id = await self._append(self._row(entry, at))
        finally:
            self._tell(entry, audit_id)

    def _row(self, entry: Entry, at: datetime | None) -> dict[str, Any]:
        return fit(
            {
                "at": at or utcnow(),
                "user_id": storable(entry.user_id),
                "channel": storable(entry.channel),
                "command": storable(entry.command[:120]),
                "args": json.dumps(redact_any(entry.args), ensure_ascii=False, sort_keys=True),
                "decision": storable(entry.decision),
                "outcome": storable(entry.outcome),
                "detail": storable(detail_text(entry.detail)),
                "provider": storable(entry.provider),
                "provider_status": entry.provider_status,
                "duration_ms": entry.duration_ms,
                "approval_id": entry.approval_id,
            }
        )

    def _tell(self, entry: Entry, audit_id: int | None) -> None:
        for listener in self.listeners:
            try:
                listener(entry, audit_id)
            except Exception:  # a listener must never lose an audit row or a command
                log.exception("an audit listener failed")

    async def _append(self, row: dict[str, Any]) -> int | None:
        """Inserts `row` as the chain's next link, after taking the database's lock for
        appends, so the head it reads is still the head when it inserts; returns its row ID."""
        async with self._appending, self.engine.begin() as conn:
            await conn.execute(*_append_lock(conn.dialect.name))
            return await _insert(conn, row, await _head(conn))

    async def note(
        self, write: Note, *, until: datetime | None = None, at: datetime | None = None
    ) -> Link | None:
        """Appends an entry about a row already on the chain: the head, or with `until` the
        last row written by then. `write` gets that row's link inside the append's transaction,
        under the appends' lock, writes there what goes with it (an anchor) and returns the
        entry to append, or None to append nothing; so without `until` the row it names is the
        head just before that entry, and the entry and what `write` wrote are committed
        together or not at all. Returns the link written about, or None when there was no such
        row or nothing was appended. `at`: the entry's time (now by default)."""
        async with self._appending, self.engine.begin() as conn:
            await conn.execute(*_append_lock(conn.dialect.name))
            head = await _head(conn)
            about = head if until is None else await _last_by(conn, until)
            entry = await write(conn, about) if about is not None else None
            if entry is None:
                return None
            audit_id = await _insert(conn, self._row(entry, at), head)
        self._tell(entry, audit_id)
        return about

    async def head(self) -> Link | None:
        """The last row's place in the chain (what an anchor keeps), or None when empty."""
        async with self.engine.connect() as conn:
            return await _head(conn)

    async def links(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` rows after sequence number `after`, in sequence order."""
        query = sa.select(audit).where(audit.c.seq > after).order_by(audit.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]

    async def verify(self, *, anchors: Sequence[Link] = (), batch: int = VERIFY_BATCH) -> Verdict:
        """The whole chain checked from row 1, `batch` rows read at a time."""
        walk = Walk(anchors=anchors)
        after = 0
        while True:
            rows = await self.links(after, batch)
            for row in rows:
                if walk.add(row) is not None:
                    return walk.end()
            if len(rows) < batch:
                return walk.end()
            after = rows[-1]["seq"]

    async def recent(
        self, limit: int, *, user: str | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if user:
            query = query.where(audit.c.user_id == user)
        if provider:
            query = query.where(audit.c.provider == provider)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]

    async def between(self, start: date, end: date, tz: ZoneInfo) -> list[dict[str, Any]]:
        since = datetime.combine(start, time.min, tz)
        until = datetime.combine(end + timedelta(days=1), time.min, tz)
        query = sa.select(audit).where(audit.c.at >= since, audit.c.at < until).order_by(audit.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]


class ChainCheck:
    """The chain checked in the background, `batch` rows a step (the approval sweeper's loop
    takes one step every 30 seconds), so no step re-hashes the whole log. Passes follow one
    another: each starts at row 1 and ends at the head, so a row edited after a pass checked it
    is found by the next. The head a finished pass reached is kept as an anchor for the
    following passes, so deleting the newest rows, or rewriting every hash from some row on, is
    found too (while this process runs: a restart starts without one).

    `ok` is False from the step that finds a break until a later pass finishes intact; before
    the first pass finishes it says that no break was found so far."""

    def __init__(self, log: AuditLog, *, batch: int = 2000) -> None:
        self.log = log
        self.batch = batch
        self.ok = True
        self.broken: Break | None = None
        self.anchor: Link | None = None
        self.walk = Walk()

    async def step(self) -> None:
        after = self.walk.head.seq if self.walk.head is not None else 0
        rows = await self.log.links(after, self.batch)
        for row in rows:
            if self.walk.add(row) is not None:
                break
        if self.walk.broken is None and len(rows) == self.batch:
            return  # the pass goes on at the next step
        verdict = self.walk.end()
        if verdict.broken is not None and verdict.broken != self.broken:
            log.error("the audit log's hash chain is broken: %s", verdict.broken)
        elif verdict.broken is None and self.broken is not None:
            log.warning("the audit log's hash chain verifies again: %s", verdict)
        self.ok = verdict.broken is None
        self.broken = verdict.broken
        if verdict.broken is None:
            self.anchor = verdict.head
        self.walk = Walk(anchors=[self.anchor] if self.anchor is not None else [])


# The export: the row id, every chained field, and the chain itself (never masked).
CSV_COLUMNS = ("id", *FIELDS, "seq", "prev_hash", "hash")
# Hex digests and numbers: nothing in them to redact, and masking part would unmake the hash.
CHAIN_COLUMNS = frozenset({"seq", "prev_hash", "hash"})


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = []
        for column in CSV_COLUMNS:
            value = row.get(column)
            if isinstance(value, datetime):
                value = value.isoformat()
            text = "" if value is None else str(value)
            values.append(text if column in CHAIN_COLUMNS else redact(text))
        writer.writerow(values)
    return buffer.getvalue().encode()
