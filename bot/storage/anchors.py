"""The audit chain's anchors as the database keeps them (`audit_anchors`): which row of the chain
each names, when, by whom, how, and where its message landed.

An anchor is taken in the audit append's own transaction (`AuditLog.note`): the anchor row and
the audit row that records it are committed together, and the row the anchor names is on the
chain before that audit row. A daily anchor has its local day, unique, so replicas racing for
it keep one; they take the appends' lock first, so the loser finds the day taken and writes
nothing. `bot/anchors.py` posts them; the outbox says here where each landed (`posted`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.audit import AuditLog, Entry
from bot.storage.chain import Link
from bot.storage.store import audit, audit_anchors
from bot.surface import MessageRef

DAILY = "daily"
COMMAND = "command"
KEY = "anchor:"


def anchor_key(anchor_id: int) -> str:
    """The outbox key of an anchor's message."""
    return f"{KEY}{anchor_id}"


def anchor_of(key: str) -> int | None:
    """The anchor whose message an outbox key names (`anchor_key`), or None."""
    number = key.removeprefix(KEY)
    return int(number) if key.startswith(KEY) and number.isdigit() else None


@dataclass(frozen=True, kw_only=True)
class Anchor:
    id: int
    seq: int
    hash: str
    at: datetime
    by: str
    how: str  # DAILY or COMMAND
    day: date | None
    channel: str
    sent_at: datetime | None = None
    ts: str | None = None

    @property
    def link(self) -> Link:
        return Link(self.seq, self.hash)


# What an anchor's audit row says (bot/anchors.py words it).
Describe = Callable[[Anchor], Entry]


def _anchor(row: Any) -> Anchor:
    return Anchor(
        id=row.id,
        seq=int(row.seq),
        hash=row.hash,
        at=row.at,
        by=row.by,
        how=row.how,
        day=row.day,
        channel=row.channel,
        sent_at=row.sent_at,
        ts=row.ts,
    )


class AnchorStore:
    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self.engine = engine
        self.audit = audit

    async def take(
        self,
        *,
        how: str,
        by: str,
        channel: str,
        at: datetime,
        day: date | None = None,
        until: datetime | None = None,
        describe: Describe,
    ) -> Anchor | None:
        """Keeps an anchor of the chain's head (or with `until`, of the last row written by
        then) and appends its audit row at `at` (`describe` says what it is). None when there is
        no row to anchor, or `day`'s daily anchor was already taken."""
        taken: list[Anchor] = []

        async def write(conn: AsyncConnection, link: Link) -> Entry | None:
            if day is not None and await _has_day(conn, day):
                return None
            values = {"at": at, "by": by, "how": how, "day": day, "channel": channel}
            result = await conn.execute(
                audit_anchors.insert().values(seq=link.seq, hash=link.hash, **values)
            )
            anchor = Anchor(
                id=int(result.inserted_primary_key[0]),  # type: ignore[index]
                seq=link.seq,
                hash=link.hash,
                at=at,
                by=by,
                how=how,
                day=day,
                channel=channel,
            )
            taken.append(anchor)
            return describe(anchor)

        await self.audit.note(write, until=until, at=at)
        return taken[0] if taken else None

    async def due(self, day: date, until: datetime) -> bool:
        """`day`'s daily anchor is not taken yet and there is a row written by `until` for it
        to name (read without the appends' lock, which `take` takes to be sure)."""
        written = sa.select(audit.c.seq).where(audit.c.at <= until).limit(1)
        async with self.engine.connect() as conn:
            if await _has_day(conn, day):
                return False
            return (await conn.execute(written)).first() is not None

    async def sent(self, anchor_id: int, *, at: datetime, ts: str | None) -> None:
        """Handed to the outbox (and landed at `ts`, when Slack took it at once)."""
        values: dict[str, Any] = {"sent_at": at}
        if ts is not None:
            values["ts"] = ts
        await self._set(anchor_id, **values)

    async def unsent(self, *, before: datetime) -> list[Anchor]:
        """Anchors taken before `before` that were never handed to the outbox: the process
        stopped between keeping one and posting it."""
        query = sa.select(audit_anchors).where(
            audit_anchors.c.sent_at.is_(None), audit_anchors.c.at < before
        )
        async with self.engine.connect() as conn:
            return [_anchor(r) for r in (await conn.execute(query)).all()]

    async def claim(self, anchor_id: int, *, at: datetime) -> bool:
        """Marks an unsent anchor as being sent; False when another process already did."""
        update = (
            audit_anchors.update()
            .where(audit_anchors.c.id == anchor_id, audit_anchors.c.sent_at.is_(None))
            .values(sent_at=at)
        )
        async with self.engine.begin() as conn:
            return bool((await conn.execute(update)).rowcount == 1)

    async def kept(self) -> list[Anchor]:
        """Every anchor, oldest first."""
        query = sa.select(audit_anchors).order_by(audit_anchors.c.id)
        async with self.engine.connect() as conn:
            return [_anchor(r) for r in (await conn.execute(query)).all()]

    # --- where the outbox says a message landed (`bot.slack.outbox.Places`) -----------------

    async def posted(self, key: str, ref: MessageRef) -> None:
        """An anchor's message landed (late, when Slack was failing): keep its `ts`."""
        if (anchor_id := anchor_of(key)) is not None:
            await self._set(anchor_id, ts=ref.ts)

    async def locate(self, key: str) -> MessageRef | None:
        """Anchors are never updated, so nothing asks where one is."""
        return None

    async def _set(self, anchor_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                audit_anchors.update().where(audit_anchors.c.id == anchor_id).values(**values)
            )


async def _has_day(conn: AsyncConnection, day: date) -> bool:
    query = sa.select(audit_anchors.c.id).where(audit_anchors.c.day == day).limit(1)
    return (await conn.execute(query)).first() is not None
