"""Revision 0009: approvals keep when their approvers were told and when they were reminded.
A request made before it counts as told (nobody gets a direct message about an old request
after the upgrade), and may still be reminded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command as alembic

from bot.storage import store

MADE = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)


async def approval_rows(url: str) -> list[dict[str, Any]]:
    engine = store.make_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(sa.text("SELECT * FROM approvals ORDER BY id"))
            return [dict(row) for row in found.mappings()]
    finally:
        await engine.dispose()


async def test_requests_made_before_count_as_told_and_not_yet_reminded(database_url: str) -> None:
    config = store.migrations_config(database_url)
    await asyncio.to_thread(alembic.upgrade, config, "0006")
    engine = store.make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                store.approvals.insert().values(
                    command_line="/drill move ref=r1",
                    command_path="drill move",
                    provider="drill",
                    args_preview="{}",
                    description="`/drill move ref=r1`",
                    requester="U1",
                    channel="C1",
                    status="pending",
                    created_at=MADE,
                    expires_at=MADE.replace(day=7),
                ),
            )
    finally:
        await engine.dispose()
    await store.upgrade(database_url)
    [row] = await approval_rows(database_url)
    made = row["notified_at"]
    assert made is not None and row["reminded_at"] is None
    assert str(made)[:16] == str(row["created_at"])[:16]

    await asyncio.to_thread(alembic.downgrade, config, "0006")
    [row] = await approval_rows(database_url)
    assert "notified_at" not in row and "reminded_at" not in row
    assert row["status"] == "pending"
