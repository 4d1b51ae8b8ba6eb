"""Databases made before the code moved into rooms still upgrade: Alembic knows a database by
the revision ids in its `alembic_version` table, never by where the migration files live, so a
database left at any earlier revision upgrades to the head from `bot/storage/migrations`."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from alembic import command as alembic
from alembic.script import ScriptDirectory

from bot.storage import store

# The revisions databases in the field were stamped with, in the order they were written.
RELEASED = ["0001", "0002", "0003", "0004", "0005", "0006"]


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
    await store.upgrade(database_url)
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
