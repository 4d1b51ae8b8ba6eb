"""Whether the database can take a write now: what `/readyz` answers with.

A `SELECT 1` says little: a SQLite file that was deleted (the pool's open connections keep
writing to the unlinked file, lost at the next restart) or made read-only still answers it. The
probe here starts a write and rolls it back, so it changes nothing:

- SQLite: the file, its directory and its `-wal`/`-shm` files must be writable (access(2),
  which also sees the immutable attribute and read-only mounts, even for root); then a fresh
  connection opened with `mode=rw` (which never creates a missing file) runs `BEGIN IMMEDIATE`
  and a write of the header's `user_version` (its own value, rolled back). The access check comes
  first because SQLite, within one process, hands a new connection a read-write descriptor left
  by an earlier one while the file is still open: that connection would write a file made
  read-only since. A connection of its own, because a pooled one may still hold a deleted file.
  The stdlib driver runs it in a thread: aiosqlite would do the same with more machinery, and
  the probe needs none of the pool.
- PostgreSQL: a temporary table created in a transaction that is rolled back; refused by a
  read-only server (a standby, `default_transaction_read_only`) or a full catalog.

A SQLite database busy with another writer is writable, just busy: that is not a failure.
What the probe finds is logged at DEBUG: `/readyz` is asked every few seconds, and the outage
itself is logged once by `bot.ops.database`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.store import is_sqlite

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"
NOT_WRITABLE = "not writable"

# How long the SQLite probe waits for another writer's lock before calling the database busy.
PROBE_BUSY_TIMEOUT = 0.5


async def database_problem(engine: AsyncEngine) -> str | None:
    """None when the database takes writes; else `UNREACHABLE` or `NOT_WRITABLE`."""
    if is_sqlite(engine):
        path = engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            return await asyncio.to_thread(_sqlite_file_problem, Path(path))
    return await _engine_problem(engine)


def _sqlite_file_problem(path: Path) -> str | None:
    path = path.resolve()
    if not path.exists():
        log.debug("the database file %s is gone", path)
        return NOT_WRITABLE
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    for target in (path, path.parent, *(p for p in companions if p.exists())):
        if not os.access(target, os.W_OK):
            log.debug("%s is read-only", target)
            return NOT_WRITABLE
    uri = f"file:{quote(str(path))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=PROBE_BUSY_TIMEOUT, isolation_level=None)
    except sqlite3.Error as exc:  # SQLITE_CANTOPEN: the file is gone, or the path is unusable
        log.debug("the database file %s cannot be opened for writing: %s", path, exc)
        return NOT_WRITABLE
    try:
        conn.execute("BEGIN IMMEDIATE")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        conn.execute(f"PRAGMA user_version = {int(version)}")
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname.startswith("SQLITE_BUSY"):
            return None  # another writer holds the lock: writable, and busy
        log.debug("the database file %s cannot be written: %s", path, exc)
        return NOT_WRITABLE
    except sqlite3.Error as exc:
        log.debug("the database file %s cannot be written: %s", path, exc)
        return NOT_WRITABLE
    finally:
        conn.close()
    return None


async def _engine_problem(engine: AsyncEngine) -> str | None:
    try:
        conn = await engine.connect()
    except Exception as exc:  # any driver's way of saying there is no connection
        log.debug("the database cannot be reached: %s", type(exc).__name__)
        return UNREACHABLE
    try:
        async with conn.begin() as transaction:
            if is_sqlite(engine):  # an in-memory database
                await conn.execute(sa.text("PRAGMA user_version = 0"))
            else:
                await conn.execute(
                    sa.text("CREATE TEMPORARY TABLE readiness_probe (n integer) ON COMMIT DROP")
                )
            await transaction.rollback()
    except sa.exc.DBAPIError as exc:
        log.debug("the database cannot be written: %s", type(exc.orig).__name__)
        return NOT_WRITABLE
    finally:
        await conn.close()
    return None
