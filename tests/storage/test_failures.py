"""Which failures mean the database is away (bot/storage/failures.py): the errors a real
SQLite file, a refused PostgreSQL connection and PostgreSQL's own SQLSTATEs give; and what is
not (a constraint, a bug, a network error outside the driver) stays None."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg.exceptions as pg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage import store
from bot.storage.failures import database_failure
from tests.support.outage import FullDisk, unwritable


def failure_of(engine: sa.Engine, statement: str) -> BaseException:
    with pytest.raises(Exception) as caught, engine.begin() as conn:
        conn.execute(sa.text(statement))
    return caught.value


# SQLite through SQLAlchemy's own (synchronous) driver: the same sqlite3 errors the bot's
# aiosqlite engine wraps, without a driver thread outliving the test's event loop.


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x BLOB)"))
    yield engine
    engine.dispose()


def test_a_full_sqlite_disk_is_the_database_away(sqlite: sa.Engine) -> None:
    disk = FullDisk()
    disk.full = True
    with disk.installed():
        exc = failure_of(sqlite, "INSERT INTO t VALUES (zeroblob(100000))")

    assert database_failure(exc) == "OperationalError: database or disk is full"


def test_a_read_only_sqlite_file_is_the_database_away(sqlite: sa.Engine, tmp_path: Path) -> None:
    sqlite.dispose()  # the next connection opens the file as it is now
    with unwritable(tmp_path / "bot.db"):
        exc = failure_of(sqlite, "INSERT INTO t VALUES (1)")
        sqlite.dispose()

    assert database_failure(exc) == "OperationalError: attempt to write a readonly database"


def test_a_sqlite_file_that_cannot_be_opened_is_the_database_away(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'gone' / 'bot.db'}")
    exc = failure_of(engine, "SELECT 1")
    engine.dispose()

    assert database_failure(exc) == "OperationalError: unable to open database file"


async def test_a_refused_postgresql_connection_is_away_and_its_password_is_not_told() -> None:
    engine = store.make_engine("postgresql+asyncpg://billing:Pw-s3cret-9@127.0.0.1:9/billing")
    with pytest.raises(Exception) as caught:
        async with engine.connect():
            pass
    await engine.dispose()
    exc = caught.value

    reason = database_failure(exc)
    assert reason is not None and reason.startswith("ConnectionRefusedError")
    assert "Pw-s3cret-9" not in reason


@pytest.mark.parametrize(
    "exc",
    [
        pg.AdminShutdownError("terminating connection due to administrator command"),  # 57P01
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.ObjectNotInPrerequisiteStateError(
            'database "billing" is not currently accepting connections'
        ),
        pg.DiskFullError("could not extend file: No space left on device"),  # 53100
    ],
)
def test_postgresql_states_that_mean_the_database_is_away(exc: BaseException) -> None:
    wrapped = sa.exc.DBAPIError("INSERT …", None, exc)

    assert database_failure(wrapped) == f"{type(exc).__name__}: {exc}"


async def test_a_broken_constraint_is_not_the_database_away(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE told_once (x INTEGER PRIMARY KEY)"))
        await conn.execute(sa.text("INSERT INTO told_once VALUES (1)"))
    with pytest.raises(sa.exc.IntegrityError) as caught:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO told_once VALUES (1)"))
    exc = caught.value

    assert isinstance(exc, sa.exc.IntegrityError)
    assert database_failure(exc) is None


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        pg.ObjectNotInPrerequisiteStateError("cannot do that now"),  # 55000, another reason
        pg.UniqueViolationError("duplicate key value"),
    ],
)
def test_other_failures_are_not_the_database_away(exc: BaseException) -> None:
    assert database_failure(exc) is None


def test_a_refused_connection_outside_the_driver_is_not_the_database_away() -> None:
    with pytest.raises(OSError) as caught:
        socket.create_connection(("127.0.0.1", 9), timeout=5)  # an HTTP call's, say

    assert database_failure(caught.value) is None
