"""SQLite's connection (`bot.storage.sqlite`, made by `bot.storage.store.make_engine`): one call
to the connection's thread per statement, none for a commit or rollback with nothing open, the
same answers and errors as aiosqlite's own, and statements that wait for a busy database in
the thread while the event loop goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage import sqlite, store
from tests.support.sqlite_lock import write_lock_held

ITEMS = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
)


@pytest.fixture
async def path(tmp_path: Path) -> AsyncIterator[Path]:
    file = tmp_path / "calls.db"
    engine = store.make_engine(f"sqlite:///{file}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(ITEMS.metadata.create_all)
    finally:
        await engine.dispose()
    yield file


@pytest.fixture
async def engine(path: Path) -> AsyncIterator[AsyncEngine]:
    made = store.make_engine(f"sqlite:///{path}")
    try:
        yield made
    finally:
        await made.dispose()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The calls handed to a connection's thread, by the name of what ran there."""
    made: list[str] = []
    handed: Callable[..., Awaitable[Any]] = sqlite.Connection._execute

    async def counted(self: sqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(getattr(fn, "__name__", repr(fn)))
        return await handed(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite.Connection, "_execute", counted)
    yield made


async def warm(engine: AsyncEngine) -> None:
    """A connection opened (its own calls: connect, the pragmas) before calls are counted."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


async def test_the_engine_makes_these_connections(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, sqlite.Connection)


async def test_a_read_is_one_call_and_a_write_two(engine: AsyncEngine, calls: list[str]) -> None:
    await warm(engine)
    calls.clear()
    async with engine.connect() as conn:  # given back with a rollback, of nothing open
        assert (await conn.execute(sa.select(sa.func.count()).select_from(ITEMS))).scalar() == 0
    assert calls == ["_run"]

    calls.clear()
    async with engine.begin() as conn:
        await conn.execute(ITEMS.insert().values(name="first"))
    assert calls == ["_run", "commit"]

    calls.clear()
    async with engine.begin() as conn:  # a transaction that only read commits nothing
        await conn.execute(sa.select(ITEMS.c.name))
    assert calls == ["_run"]


async def test_answers_are_aiosqlites(path: Path, engine: AsyncEngine) -> None:
    """Rows, RETURNING, rowcount, a batch (executemany) and the inserted key: the same on
    this engine as on SQLAlchemy's aiosqlite engine with aiosqlite's own connection."""
    plain = create_async_engine(f"sqlite+aiosqlite:///{path}")

    async def answers(on: AsyncEngine, prefix: str) -> list[Any]:
        async with on.begin() as conn:
            key = (
                await conn.execute(ITEMS.insert().values(name=f"{prefix}-a"))
            ).inserted_primary_key
            returned = (
                await conn.execute(
                    ITEMS.insert().values(name=f"{prefix}-b").returning(ITEMS.c.name)
                )
            ).all()
            batch = await conn.execute(
                ITEMS.insert(), [{"name": f"{prefix}-c"}, {"name": f"{prefix}-d"}]
            )
            changed = await conn.execute(
                ITEMS.update()
                .where(ITEMS.c.name.like(f"{prefix}-%"))
                .values(name=ITEMS.c.name + "!")
            )
            rows = (
                await conn.execute(
                    sa.select(ITEMS.c.name)
                    .where(ITEMS.c.name.like(f"{prefix}-%"))
                    .order_by(ITEMS.c.id)
                )
            ).all()
            first = (
                await conn.execute(sa.select(ITEMS.c.name).where(ITEMS.c.name.like(f"{prefix}-%")))
            ).first()
        return [
            key is not None,
            [r[0].removeprefix(prefix) for r in returned],
            batch.rowcount,
            changed.rowcount,
            [r[0].removeprefix(prefix) for r in rows],
            first is not None and first[0].removeprefix(prefix),
        ]

    try:
        theirs = await answers(plain, "plain")
    finally:
        await plain.dispose()
    ours = await answers(engine, "ours")
    assert ours == theirs == [True, ["-b"], 2, 4, ["-a!", "-b!", "-c!", "-d!"], "-a!"]


async def test_a_failed_statement_raises_as_before_and_its_transaction_is_undone(
    engine: AsyncEngine, calls: list[str]
) -> None:
    await warm(engine)
    calls.clear()
    with pytest.raises(sa.exc.IntegrityError, match="UNIQUE constraint failed: items.name"):
        async with engine.begin() as conn:
            await conn.execute(ITEMS.insert().values(name="twice"))
            await conn.execute(ITEMS.insert().values(name="twice"))
    assert calls == ["_run", "_run", "rollback"]  # the first insert's transaction was open
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(ITEMS.c.name))).all() == []


async def test_a_busy_database_waits_in_the_thread_while_the_loop_and_reads_go_on(
    path: Path, engine: AsyncEngine
) -> None:
    await warm(engine)
    with write_lock_held(path):
        writing = asyncio.ensure_future(_insert(engine, "waited"))
        # Were the wait in the event loop's thread, nothing below would run until the busy
        # timeout (30 s) ran out; a read through another connection answers meanwhile (WAL).
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(ITEMS.c.name))).all() == []
        done, _ = await asyncio.wait({writing}, timeout=0.5)
        assert not done, "the write did not wait for the lock"
    await asyncio.wait_for(writing, timeout=30)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(ITEMS.c.name))).scalars().all() == ["waited"]


async def _insert(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(ITEMS.insert().values(name=name))


async def test_a_cursor_hands_its_rows_out_in_parts(path: Path) -> None:
    connection = await sqlite.connect(str(path))
    try:
        async with connection.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO items (name) VALUES (?)", [("a",), ("b",), ("c",), ("d",)]
            )
            await cursor.execute("SELECT name FROM items ORDER BY id")
            assert await cursor.fetchone() == ("a",)
            assert list(await cursor.fetchmany()) == [("b",)]  # arraysize rows: 1
            assert list(await cursor.fetchmany(2)) == [("c",), ("d",)]
            assert list(await cursor.fetchall()) == []
            assert await cursor.fetchone() is None
        await connection.commit()
    finally:
        await connection.close()


# A read that keeps the connection's thread busy for a while (a few hundred ms here).
SLOW_READ = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
    " SELECT count(*) FROM n"
)


async def test_a_rollback_after_a_cancelled_write_waits_for_it(path: Path) -> None:
    """A write handed to the thread and no longer awaited (its caller cancelled) still runs
    there; the rollback that follows must run after it, not be skipped because no
    transaction was open yet when it was asked for."""
    connection = await sqlite.connect(str(path))
    try:
        async with connection.cursor() as busy, connection.cursor() as cursor:
            reading = asyncio.ensure_future(busy.execute(SLOW_READ))
            writing = asyncio.ensure_future(
                cursor.execute("INSERT INTO items (name) VALUES ('cancelled')")
            )
            await asyncio.sleep(0)  # both handed to the thread, the write queued behind
            writing.cancel()
            await connection.rollback()
            await reading
            await busy.execute("SELECT 1")  # queued last: the write has run by now
        assert not connection.in_transaction, "the write's transaction was left open"
    finally:
        await connection.close()
    async with aiosqlite.connect(str(path)) as other:  # the write was rolled back
        assert list(await other.execute_fetchall("SELECT name FROM items")) == []
