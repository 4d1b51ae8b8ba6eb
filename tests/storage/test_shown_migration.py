"""Revision 0012: approvals keep when their end was shown. A final approval from before it
counts as shown, so no old result or note is posted again after the upgrade; a pending one
does not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic import command as alembic

from bot.storage import store
from tests.storage.test_notice_marks_migration import approval_rows

MADE = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)


async def test_final_approvals_made_before_count_as_shown(database_url: str) -> None:
    config = store.migrations_config(database_url)
    await asyncio.to_thread(alembic.upgrade, config, "0011")
    engine = store.make_engine(database_url)
    common = {
        "command_line": "/drill move ref=r1",
        "command_path": "drill move",
        "provider": "drill",
        "args_preview": "{}",
        "description": "`/drill move ref=r1`",
        "requester": "U1",
        "channel": "C1",
        "created_at": MADE,
        "expires_at": MADE.replace(day=7),
    }
    try:
        async with engine.begin() as conn:
            done = {"status": "done", "outcome": "moved r1", "finished_at": MADE}
            await conn.execute(store.approvals.insert().values(**common, **done))
            await conn.execute(store.approvals.insert().values(**common, status="pending"))
    finally:
        await engine.dispose()
    await store.upgrade(database_url)
    old, pending = await approval_rows(database_url)
    assert str(old["shown_at"])[:16] == str(old["finished_at"])[:16]
    assert pending["shown_at"] is None

    await asyncio.to_thread(alembic.downgrade, config, "0011")
    old, _ = await approval_rows(database_url)
    assert "shown_at" not in old and old["status"] == "done"
