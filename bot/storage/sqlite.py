"""SQLite through aiosqlite, with one call to the connection's thread per statement.

aiosqlite keeps each sqlite3 connection in a thread of its own and hands every call to it,
the answer coming back through the event loop. SQLAlchemy's aiosqlite adapter makes four such
calls for a statement (a cursor, execute, fetchall, close) and one for each commit and each
rollback, including the rollback of every connection given back to the pool after a read
(https://docs.sqlalchemy.org/en/20/core/pooling.html#reset-on-return). Measured on a 2-core
machine, a call costs some 140 µs of CPU between the two threads (a queue, a future, a wake-up
of the loop through its self-pipe), where the sqlite3 call itself takes 2 µs: an approval's
46 statements took 255 calls, 83 here (bench/approval_cost.py).

The connection here is aiosqlite's, with two changes the adapter cannot tell from the outside:
its cursor executes, fetches every row and closes in one call (the rows wait in the cursor
for `fetchall`), and a commit or rollback with no transaction open is not sent at all (the
connection says whether one is: `in_transaction` is a flag of the connection, read without
a call; and no call handed to the thread may still be running there, where it could open
one). The statements, their order and their transactions are the same as aiosqlite's, and
a statement still runs in the connection's thread, never in the event loop's, so a slow query
or a busy database never stops the bot answering Slack.

Every row is fetched with its statement: SQLAlchemy's aiosqlite adapter fetches all rows at
once anyway (unless a server-side cursor streams them, which nothing here asks for).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager


def _run(
    connection: sqlite3.Connection, sql: str, parameters: Any, many: bool
) -> tuple[sqlite3.Cursor, list[Any]]:
    """In the connection's thread: the statement, all its rows, and its cursor closed."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        return cursor, cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()  # description, rowcount and lastrowid stay readable


class Cursor(aiosqlite.Cursor):
    """A cursor whose statement is one call to the thread; its rows are kept until fetched."""

    def __init__(self, connection: Connection) -> None:
        # The sqlite3 cursor is made in the thread, with the statement (`_run`).
        super().__init__(connection, None)  # type: ignore[arg-type]
        self._rows: list[Any] = []

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Cursor:
        await self._statement(sql, () if parameters is None else parameters, many=False)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> Cursor:
        await self._statement(sql, parameters, many=True)
        return self

    async def _statement(self, sql: str, parameters: Any, *, many: bool) -> None:
        call: Callable[..., Awaitable[tuple[sqlite3.Cursor, list[Any]]]] = self._conn._execute
        self._cursor, self._rows = await call(_run, self._conn._conn, sql, parameters, many)

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        count = self.arraysize if size is None else size
        rows, self._rows = self._rows[:count], self._rows[count:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []  # the sqlite3 cursor was closed with its statement


class Connection(aiosqlite.Connection):
    """aiosqlite's connection, making its cursors `Cursor`s and skipping empty commits."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        # Calls handed to the thread, and the last that has finished there (set by the thread;
        # they finish in the order they were handed).
        self._handed = 0
        self._finished = 0

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._handed += 1
        number = self._handed

        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self._finished = number

        run: Callable[..., Awaitable[Any]] = super()._execute
        return await run(call)

    def _nothing_open(self) -> bool:
        """No transaction open, and none about to be: a statement handed to the thread whose
        caller stopped waiting (cancelled) may still open one there, and a commit or rollback
        asked for after it must run after it."""
        return self._finished == self._handed and not self._conn.in_transaction

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return Cursor(self)

    async def commit(self) -> None:
        if not self._nothing_open():
            await super().commit()

    async def rollback(self) -> None:
        if not self._nothing_open():
            await super().rollback()


def connect(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> Connection:
    """What `aiosqlite.connect` makes, as `Connection`; its thread is a daemon, as SQLAlchemy
    makes aiosqlite's own (a statement stuck at exit does not hold the process)."""

    def connector() -> sqlite3.Connection:
        made: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return made

    connection = Connection(connector, iter_chunk_size)
    connection._thread.daemon = True
    return connection
