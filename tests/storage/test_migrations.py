"""Databases made before the code moved into rooms still upgrade: Alembic knows a database by
the revision ids in its `alembic_version` table, never by where the migration files live, so a
database left at any earlier revision upgrades to the head from `bot/storage/migrations`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command as alembic
from alembic.script import ScriptDirectory

from bot.storage import store
from bot.storage.audit import AuditLog, Entry
from bot.storage.chain import GENESIS

# The revisions databases in the field were stamped with, in the order they were written.
RELEASED = ["0001", "0002", "0003", "0004", "0005", "0006", "0007"]

# The audit table as every revision before the chain (0007) has it.
OLD_AUDIT = sa.table(
    "audit",
    sa.column("id", sa.Integer),
    sa.column("at", store.UTCDateTime),
    *(
        sa.column(name)
        for name in ("user_id", "channel", "command", "args", "decision", "outcome", "detail")
    ),
    *(sa.column(name) for name in ("provider", "provider_status", "duration_ms", "approval_id")),
)
ENTRY = Entry(
    user_id="U1", channel="C1", command="/billing audit", args={}, decision="ran", outcome="done"
)
EARLIER = datetime(2025, 3, 30, 0, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3)))


def old_rows(count: int) -> list[dict[str, object]]:
    """Rows as earlier versions wrote them: other scripts, NULLs, empty text, microseconds."""
    return [
        {
            "at": EARLIER + timedelta(minutes=n, microseconds=n),
            "user_id": f"U{n}",
            "channel": "C1",
            "command": "/smsc invoice create",
            "args": '{"client": "Ação — 東京"}',
            "decision": "executed" if n % 2 else "requested",
            "outcome": "done",
            "detail": "" if n % 3 else f"run {n}",
            "provider": "smsc",
            "provider_status": None if n % 2 else 200,
            "duration_ms": n * 7,
            "approval_id": None if n % 4 else n,
        }
        for n in range(count)
    ]


async def write_old_rows(database_url: str, count: int) -> None:
    engine = store.make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(OLD_AUDIT.insert(), old_rows(count))
            # an id skipped (a rolled-back insert): the chain follows the ids' order, not values
            await conn.execute(OLD_AUDIT.delete().where(OLD_AUDIT.c.id == 2))
    finally:
        await engine.dispose()


async def chained_after_upgrade(database_url: str, count: int) -> None:
    """The rows written before the chain verify after the upgrade, in the order of their IDs."""
    engine = store.make_engine(database_url)
    try:
        log = AuditLog(engine)
        verdict = await log.verify()
        assert verdict.broken is None, str(verdict)
        assert verdict.rows == count - 1
        rows = await log.links(0, count)
        assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
        assert rows[0]["prev_hash"] == GENESIS
        assert [r["detail"] for r in rows] == [
            r["detail"] for n, r in enumerate(old_rows(count)) if n != 1
        ]
        await log.record(ENTRY)  # and new rows carry on from them
        assert (await log.verify()).rows == count
    finally:
        await engine.dispose()


def test_the_moved_migrations_keep_every_released_revision() -> None:
    script = ScriptDirectory.from_config(store.migrations_config("sqlite:///unused.db"))
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert chain[: len(RELEASED)] == RELEASED


@pytest.mark.parametrize("revision", RELEASED[:-1])
async def test_a_database_at_an_earlier_revision_upgrades_to_the_head(
    database_url: str, revision: str
) -> None:
    config = store.migrations_config(database_url)
    await asyncio.to_thread(alembic.upgrade, config, revision)
    chained = int(revision) < 7
    if chained:
        await write_old_rows(database_url, 6)
    await store.upgrade(database_url)
    if chained:
        await chained_after_upgrade(database_url, 6)
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = store.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            stamped = (
                await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
            ).scalar()
            tables = await conn.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    assert stamped == head
    assert {t.name for t in store.metadata.sorted_tables} <= tables


async def test_the_chain_can_be_taken_off_and_put_back(database_url: str) -> None:
    config = store.migrations_config(database_url)
    await asyncio.to_thread(alembic.upgrade, config, "0006")
    await write_old_rows(database_url, 4)
    await store.upgrade(database_url)
    await asyncio.to_thread(alembic.downgrade, config, "0006")
    engine = store.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("audit")}
            )
    finally:
        await engine.dispose()
    assert not columns & {"seq", "prev_hash", "hash"}
    await store.upgrade(database_url)
    await chained_after_upgrade(database_url, 4)
