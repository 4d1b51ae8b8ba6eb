"""The database's health, for real: the write probe behind `/readyz`, and audit writes that wait
for a SQLite database another process is writing instead of failing (WAL and a busy timeout,
set for every aiosqlite connection by `bot.storage.store.make_engine`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ops.health import NOT_WRITABLE, UNREACHABLE, database_problem
from bot.storage import store
from bot.storage.audit import AuditLog, Entry
from tests.support.sqlite_lock import write_lock_held


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[tuple[Path, AsyncEngine]]:
    """A migrated SQLite database file and the bot's engine on it."""
    path = tmp_path / "bot.db"
    url = f"sqlite:///{path}"
    await store.upgrade(url)
    engine = store.make_engine(url)
    try:
        yield path, engine
    finally:
        await engine.dispose()


def entry(detail: str) -> Entry:
    return Entry(
        user_id="U1",
        channel="C1",
        command="/voipcloud move-funds",
        args={"account": "10023"},
        decision="executed",
        outcome="done",
        detail=detail,
        provider="voipcloud",
    )


async def audited(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [str(d) for d in (await conn.execute(sa.select(store.audit.c.detail))).scalars()]


async def test_every_connection_is_in_wal_mode_with_a_busy_timeout(
    sqlite_db: tuple[Path, AsyncEngine],
) -> None:
    _, engine = sqlite_db
    async with engine.connect() as conn:
        mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
        timeout = (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar_one()
    assert (mode, timeout) == ("wal", 30000)


async def test_an_audit_write_waits_for_another_writer_and_is_kept(
    sqlite_db: tuple[Path, AsyncEngine],
) -> None:
    path, engine = sqlite_db
    log = AuditLog(engine)
    started = asyncio.Event()

    def on_statement(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # The append's first write takes the write lock (then it reads the head and inserts).
        if statement.startswith(("UPDATE audit", "INSERT INTO audit")):
            started.set()

    sa.event.listen(engine.sync_engine, "before_cursor_execute", on_statement)
    with write_lock_held(path):
        writing = asyncio.ensure_future(log.record(entry("written while another process wrote")))
        await asyncio.wait_for(started.wait(), timeout=30)
        # The lock stays held for a second after the write was issued: without a busy timeout
        # the write fails at once ("database is locked") and would be done here.
        done, _ = await asyncio.wait({writing}, timeout=1.0)
        assert not done, "the audit write gave up while the database was busy"
    await asyncio.wait_for(writing, timeout=30)  # the lock is released: it goes through

    assert await audited(engine) == ["written while another process wrote"]


async def test_the_probe_passes_on_a_writable_file_and_changes_nothing(
    sqlite_db: tuple[Path, AsyncEngine],
) -> None:
    path, engine = sqlite_db
    before = path.read_bytes()
    assert await database_problem(engine) is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert path.read_bytes() == before


async def test_a_busy_database_is_writable_not_failed(
    sqlite_db: tuple[Path, AsyncEngine],
) -> None:
    path, engine = sqlite_db
    with write_lock_held(path):
        assert await database_problem(engine) is None


async def test_a_deleted_file_is_not_writable(sqlite_db: tuple[Path, AsyncEngine]) -> None:
    path, engine = sqlite_db
    assert await ping_then_problem(engine) is None
    path.unlink()
    # The pool's connection still reads the unlinked file; the probe does not take it for one.
    assert await store.ping(engine)
    assert await database_problem(engine) == NOT_WRITABLE
    assert not path.exists()  # and it did not create an empty one in its place


async def ping_then_problem(engine: AsyncEngine) -> str | None:
    assert await store.ping(engine)  # a pooled connection is open on the file
    return await database_problem(engine)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be written, by anyone: mode 0444, and, for root (whom modes do not stop),
    the immutable attribute."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    immutable = False
    try:
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip("running as root, where only chattr +i makes a file read-only")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


async def test_a_read_only_file_is_not_writable(sqlite_db: tuple[Path, AsyncEngine]) -> None:
    path, engine = sqlite_db
    assert await ping_then_problem(engine) is None
    with read_only(path):
        assert await database_problem(engine) == NOT_WRITABLE
    assert await database_problem(engine) is None  # and ready again once it can be written


async def test_an_unreachable_server_is_unreachable() -> None:
    engine = store.make_engine("postgresql://billing:billing@127.0.0.1:9/billing")
    try:
        assert await database_problem(engine) == UNREACHABLE
    finally:
        await engine.dispose()


async def test_a_read_only_postgresql_database_is_not_writable(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    engine = store.make_engine(database_url)
    name = database_url.rsplit("/", 1)[1]
    try:
        assert await database_problem(engine) is None
        async with engine.connect() as conn:
            await conn.execute(
                sa.text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            )
            await conn.commit()
        await engine.dispose()  # new sessions take the setting
        assert await database_problem(engine) == NOT_WRITABLE
    finally:
        await engine.dispose()


async def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(
    database_url: str,
) -> None:
    """What a restart does to an idle pooled connection, done to one: the next checkout opens
    a new connection instead of handing out the dead one (no ping: asyncpg knows it closed)."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    engine = store.make_engine(database_url)
    admin = store.make_engine(database_url)
    pid_of = sa.text("SELECT pg_backend_pid()")
    try:
        async with engine.connect() as conn:
            pooled = (await conn.execute(pid_of)).scalar()
        async with admin.connect() as conn:
            ended = sa.text("SELECT pg_terminate_backend(:pid)")
            assert (await conn.execute(ended, {"pid": pooled})).scalar() is True
        alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
        for _ in range(200):  # the server's end of it, then asyncpg's reading of the close
            async with admin.connect() as conn:
                if not (await conn.execute(alive, {"pid": pooled})).scalar():
                    break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        async with engine.connect() as conn:
            assert (await conn.execute(pid_of)).scalar() != pooled
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
        await admin.dispose()
