"""What a failed database call means: the database is away (unreachable, refusing, read-only,
full), or something else went wrong (a bug, a constraint, a bad value).

`database_failure(exc)` answers the first: the reason in a few words (no traceback, no
secret), or None. It walks the exception and what caused it, since SQLAlchemy wraps the
driver's error (`.orig`) and asyncpg raises plain `OSError`s while it connects:

- SQLAlchemy: `InterfaceError`, or any `DBAPIError` whose connection was invalidated.
- PostgreSQL by SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html):
  class 08 (connection exception), 53 (insufficient resources: disk full, too many
  connections), 57P (operator intervention: shutdown, cannot connect now), 58 (system error:
  I/O), 25006 (read-only transaction: a standby, `default_transaction_read_only`), 3D000 (no
  such database), 28 (the login refused) and 55000 with "not currently accepting connections"
  (`ALTER DATABASE … ALLOW_CONNECTIONS false`).
- asyncpg's `InterfaceError` (a connection closed under a call).
- SQLite by result code (https://www.sqlite.org/rescode.html): READONLY, IOERR (a file made
  immutable answers writes with EPERM, which SQLite reports as SQLITE_IOERR_WRITE), FULL,
  CANTOPEN, BUSY and LOCKED (the lock not free within the busy timeout), NOTADB and CORRUPT.
- `OSError` and `TimeoutError` raised inside the database driver (a refused or timed-out
  connect), never those of an HTTP call.
"""

from __future__ import annotations

import sqlite3
import traceback

import sqlalchemy as sa

from commands.secrets import redact

SQLSTATE_CLASSES = ("08", "53", "57P", "58", "28")
SQLSTATES = frozenset({"25006", "3D000"})
NOT_ACCEPTING = "not currently accepting connections"
SQLITE_CODES = (
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
)
DRIVER_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3")

# What a database call can raise when the database fails: SQLAlchemy's errors, and the plain
# `OSError`s (`ConnectionError`, a refused connect) asyncpg raises while it connects, which
# SQLAlchemy does not wrap. For `except` around database writes only, never around a
# provider's HTTP call.
DATABASE_ERRORS: tuple[type[sa.exc.SQLAlchemyError], type[OSError]] = (
    sa.exc.SQLAlchemyError,
    OSError,
)
REASON_LENGTH = 200


def database_failure(exc: BaseException) -> str | None:
    """Why the database could not be used, in a few words; None when `exc` is not about
    the database being away."""
    for link in _chain(exc):
        if _is_away(link):
            return _reason(link)
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what it wraps (`.orig`) and what caused it, each once, innermost last."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop(0)
        if link is None or any(link is s for s in seen) or len(seen) > 20:
            continue
        seen.append(link)
        todo += [getattr(link, "orig", None), link.__cause__, link.__context__]
    return seen


def _is_away(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.InterfaceError):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if _asyncpg_interface_error(exc):
        return True
    if isinstance(exc, sqlite3.Error):
        name = str(getattr(exc, "sqlite_errorname", ""))
        return name.startswith(SQLITE_CODES)
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if isinstance(state, str):
        if state == "55000":
            return NOT_ACCEPTING in str(exc)
        return state in SQLSTATES or state.startswith(SQLSTATE_CLASSES)
    if isinstance(exc, OSError | TimeoutError):
        return _raised_in_driver(exc)
    return False


def _asyncpg_interface_error(exc: BaseException) -> bool:
    """asyncpg's `InterfaceError` family: the connection closed under a call, or unusable
    (its `PostgresConnectionError`s carry a class 08 SQLSTATE, seen above). By name, as asyncpg
    ships no type information."""
    return any(
        kind.__name__ == "InterfaceError" and kind.__module__.startswith("asyncpg")
        for kind in type(exc).__mro__
    )


def _raised_in_driver(exc: BaseException) -> bool:
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".", 1)[0] in DRIVER_MODULES:
            return True
    return False


def _reason(exc: BaseException) -> str:
    """The error's type and the first line of its message: what an operator needs."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return redact(reason)[:REASON_LENGTH]
