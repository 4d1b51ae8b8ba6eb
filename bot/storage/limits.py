"""Provider limits shared by every replica, over PostgreSQL (`commands.limits.SharedLimits`).

Turns (SMSC's one document request a minute per login): a replica takes the key's session-level
advisory lock on a connection of its own, waits until `spacing` seconds have passed since the
`limit_turns.last_done` of the key (database clock), sends, stamps `last_done` and unlocks. Two
replicas therefore never overlap, and each starts at least `spacing` after the other finished;
a replica that dies mid-turn frees the lock with its session.

Sliding windows (VoIPcloud's request budget per token): each slot is a `limit_slots` row.
Taking one runs in a transaction holding the key's transaction-level advisory lock: forget the
rows older than the window, count, insert if there is room. Times come from the caller's clock,
so replicas need synchronised clocks (NTP), as any shared schedule does.

Keys are digests (`commands.limits.limit_key`), never the login or token themselves. SQLite
means one process, so the bot does not use this there: the limits stay in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.store import UTCDateTime

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# The tables of migration 0005, described here for queries only.
_tables = sa.MetaData()
limit_turns = sa.Table(
    "limit_turns",
    _tables,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("last_done", UTCDateTime, nullable=False),
)
limit_slots = sa.Table(
    "limit_slots",
    _tables,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)


def lock_id(key: str) -> int:
    """The advisory lock number of a limit key (64-bit, signed, as PostgreSQL wants it)."""
    digest = hashlib.sha256(f"billing-bot limit {key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class DatabaseLimits:
    def __init__(self, engine: AsyncEngine, *, sleep: Sleep = asyncio.sleep) -> None:
        self.engine = engine
        self.sleep = sleep

    @contextlib.asynccontextmanager
    async def turn(self, key: str, spacing: float) -> AsyncIterator[None]:
        lock = {"lock": lock_id(key)}
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_lock(:lock)"), lock)
            await conn.commit()
            try:
                wait = (
                    await conn.execute(
                        sa.text(
                            "SELECT EXTRACT(EPOCH FROM (last_done - clock_timestamp())) + :spacing"
                            " FROM limit_turns WHERE key = :key"
                        ),
                        {"key": key, "spacing": spacing},
                    )
                ).scalar()
                await conn.commit()
                if wait is not None and float(wait) > 0:
                    await self.sleep(float(wait))
                yield
            finally:
                try:
                    await conn.execute(
                        sa.text(
                            "INSERT INTO limit_turns (key, last_done)"
                            " VALUES (:key, clock_timestamp()) ON CONFLICT (key)"
                            " DO UPDATE SET last_done = EXCLUDED.last_done"
                        ),
                        {"key": key},
                    )
                    # Committed before the unlock: a session lock is let go at once, not at
                    # commit, and the next turn must read this time, not the one before it.
                    await conn.commit()
                    await conn.execute(sa.text("SELECT pg_advisory_unlock(:lock)"), lock)
                    await conn.commit()
                except Exception:  # the lock goes with the session when the connection closes
                    log.warning("could not end the turn of limit %s cleanly", key, exc_info=True)
                    await conn.invalidate()

    async def take(
        self, key: str, *, requests: int, window: timedelta, now: datetime
    ) -> tuple[bool, list[datetime]]:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock_id(key)}
            )
            await conn.execute(
                limit_slots.delete().where(
                    limit_slots.c.key == key, limit_slots.c.at <= now - window
                )
            )
            sent = list(
                (
                    await conn.execute(
                        sa.select(limit_slots.c.at)
                        .where(limit_slots.c.key == key)
                        .order_by(limit_slots.c.at)
                    )
                ).scalars()
            )
            taken = len(sent) < requests
            if taken:
                await conn.execute(limit_slots.insert().values(key=key, at=now))
                sent.append(now)
        return taken, sorted(sent)

    async def slots(self, key: str, *, window: timedelta, now: datetime) -> list[datetime]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(limit_slots.c.at)
                .where(limit_slots.c.key == key, limit_slots.c.at > now - window)
                .order_by(limit_slots.c.at)
            )
            return list(rows.scalars())
