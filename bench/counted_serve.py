"""`billing-bot serve`, counting every statement it sends to the database (for approval_cost.py).

    python bench/counted_serve.py COUNTS_FILE serve --host 127.0.0.1 --port 3000
    python bench/counted_serve.py COUNTS_FILE bare-approval --host 127.0.0.1 --port 3002

Runs `bot.cli.main` with the arguments after COUNTS_FILE, after registering SQLAlchemy events
on every engine the process makes: `before_cursor_execute` (each statement, counted as a read
when it starts with SELECT, a write when it starts with INSERT, UPDATE or DELETE, else other,
and by its shape: the statement's first 160 characters with whitespace squeezed), `commit` and
`begin` (a transaction, as SQLAlchemy sees it), `commit` and `rollback`, the pool's `checkout`
and `connect` (a connection opened); the round trips as they are made (`round_trips`: on
PostgreSQL each write asyncpg makes to its socket, one per query, BEGIN, COMMIT or ROLLBACK,
two for a statement not yet prepared on that connection; on SQLite each call aiosqlite hands
to its connection's thread), and, as `cpu_ms`, the CPU time the process has used (all its
threads). On
SIGUSR1 (and at exit) it writes what it counted so far, as JSON, to COUNTS_FILE (through a
temporary file and a rename, so a reader never sees half of it).

With `bare-approval` first, it runs bench/bare_approval.py's `main` instead (the floor, which
sends no statement: only its CPU time is of use). Which `bot` it runs is PYTHONPATH's choice
(approval_cost.py sets it to this checkout or to the `--reference` one); this file imports
nothing of the repository itself (bench/bare_approval.py imports two names of VoIPcloud's).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import resource
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

COUNTS: Counter[str] = Counter()
SHAPES: Counter[str] = Counter()
SPACES = re.compile(r"\s+")
WRITES = ("INSERT", "UPDATE", "DELETE")


def _statement(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    shape = SPACES.sub(" ", statement).strip()
    verb = shape.split(" ", 1)[0].upper()
    kind = "reads" if verb == "SELECT" else "writes" if verb in WRITES else "other"
    COUNTS["statements"] += 1
    COUNTS[kind] += 1
    if executemany:
        COUNTS["executemany"] += 1
    SHAPES[shape[:160]] += 1


def _commit(conn: Any) -> None:
    COUNTS["commits"] += 1


def _rollback(conn: Any) -> None:
    COUNTS["rollbacks"] += 1


def _begin(conn: Any) -> None:
    COUNTS["transactions"] += 1


def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    COUNTS["checkouts"] += 1


def _connect(dbapi_connection: Any, record: Any) -> None:
    COUNTS["connects"] += 1


def _count_round_trips() -> None:
    """Wraps the two places every database round trip passes: asyncio's socket transport
    (counted when its protocol is asyncpg's) and aiosqlite's hand-over to its thread."""
    import asyncio.selector_events

    import aiosqlite.core

    events: Any = asyncio.selector_events  # the transport class is private, untyped
    transport = events._SelectorSocketTransport
    write = transport.write

    def counted_write(self: Any, data: Any) -> None:
        if type(self._protocol).__module__.startswith("asyncpg"):
            COUNTS["round_trips"] += 1
        write(self, data)

    transport.write = counted_write
    connection: Any = aiosqlite.core.Connection
    execute = connection._execute

    async def counted_execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await execute(self, fn, *args, **kwargs)

    connection._execute = counted_execute


def dump(path: Path) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    COUNTS["cpu_ms"] = round((usage.ru_utime + usage.ru_stime) * 1000)
    data = {"pid": os.getpid(), "counts": dict(COUNTS), "shapes": dict(SHAPES)}
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(data))
    partial.replace(path)


def main() -> int:
    path = Path(sys.argv[1])
    event.listen(Engine, "before_cursor_execute", _statement)
    event.listen(Engine, "commit", _commit)
    event.listen(Engine, "rollback", _rollback)
    event.listen(Engine, "begin", _begin)
    event.listen(Pool, "checkout", _checkout)
    event.listen(Pool, "connect", _connect)
    _count_round_trips()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        dump(path)

    signal.signal(signal.SIGUSR1, on_signal)
    atexit.register(dump, path)
    dump(path)
    if sys.argv[2] == "bare-approval":  # the floor approval_cost.py runs beside the bot
        from bench.bare_approval import main as floor  # PYTHONPATH is this checkout

        return floor(sys.argv[3:])
    from bot.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
