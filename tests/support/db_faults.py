"""Database faults on demand: the Nth statement of a kind fails as a lost server would make it.

    with db_faults(runtime.engine) as faults:
        faults.fail(CLAIM)                     # the next claim's UPDATE raises
        ...
        assert faults.fired == 1

A `before_cursor_execute` listener (SQLAlchemy's event, on the sync engine under the
`AsyncEngine`; with no engine, on every engine of the process, for a bot a test does not build
itself) raises `sqlalchemy.exc.OperationalError` before the statement reaches the database, so
the statement's transaction is rolled back as after a dropped connection. A kind is a regular
expression over the statement's SQL (as SQLAlchemy renders it for either database) and,
optionally, one over its parameters; `nth` picks which matching statement fails, `times` how
many in a row from there.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

# The writes of an approval, as their SQL starts (the SET clause follows the table's columns;
# a bound value renders as `?` on SQLite, `$1::TIMESTAMP WITH TIME ZONE` on PostgreSQL).
REQUEST = r"^INSERT INTO approvals "
VOTE = r"^INSERT INTO approval_votes "
CLAIM = r"^UPDATE approvals SET status=[^,]+, decided_by=[^,]+, decided_at=[^,]+, runner="
HEARTBEAT = r"^UPDATE approvals SET heartbeat_at="
FINISH = r"^UPDATE approvals SET status=[^,]+, outcome=[^,]+, finished_at="
AUDIT = r"^INSERT INTO audit "
OUTBOX = r"^INSERT INTO deliveries "


class InjectedFault(Exception):
    """What the driver would have raised: the server went away."""


@dataclass
class Armed:
    sql: re.Pattern[str]
    params: re.Pattern[str] | None
    nth: int
    times: int
    seen: int = 0


@dataclass
class DbFaults:
    armed: list[Armed] = field(default_factory=list)
    fired: int = 0
    statements: list[str] = field(default_factory=list)

    def fail(self, sql: str, *, nth: int = 1, times: int = 1, params: str | None = None) -> None:
        """The `nth` statement from now matching `sql` (and `params`, over their repr) fails,
        and the `times - 1` matching ones after it."""
        pattern = re.compile(params) if params is not None else None
        self.armed.append(Armed(re.compile(sql), pattern, nth, times))

    def before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self.statements.append(statement)
        for armed in self.armed:
            if not armed.sql.search(statement):
                continue
            if armed.params is not None and not armed.params.search(repr(parameters)):
                continue
            armed.seen += 1
            if armed.nth <= armed.seen < armed.nth + armed.times:
                self.fired += 1
                raise sa.exc.OperationalError(statement, parameters, InjectedFault("injected"))


@contextlib.contextmanager
def db_faults(engine: AsyncEngine | None = None) -> Iterator[DbFaults]:
    faults = DbFaults()
    target: Any = engine.sync_engine if engine is not None else Engine
    sa.event.listen(target, "before_cursor_execute", faults.before)
    try:
        yield faults
    finally:
        sa.event.remove(target, "before_cursor_execute", faults.before)
