"""The outbox's statements, each one round trip: what used to be a read beside every write.

    write  ─► INSERT … RETURNING: the rows of one reply in one statement, the first claimed
              as it is written (it is about to be tried), with what sending it needs
    claim  ─► UPDATE … RETURNING: pending (or its lease gone) → sending, with the row and what
              sending it needs
    wait   ─► UPDATE … RETURNING: a claimed row whose turn has not come back to pending, and
              whether a row before it still waits
    finish ─► UPDATE … RETURNING: done, superseded or given up, and whether rows of the same
              message wait behind it

What sending needs, read in the same statement as subqueries on the deliveries table:
`behind` (an earlier row of the same message has not gone yet; notices hold nothing back),
`outdated` (a newer update of the same message exists, so this one would only step back) and
`landed` (the ts the message's post landed at). They are judged as the statement sees the
table, as the separate reads were judged before; a claim is still one conditional UPDATE, so
whoever's UPDATE changes the row owns it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot.slack.notices import NOTICE
from bot.storage.store import deliveries

POST = "chat.postMessage"
UPDATE = "chat.update"
PENDING, SENDING, DONE = "pending", "sending", "done"
WAITING = (PENDING, SENDING)

# Subqueries on the row being written or changed. Written out: SQLAlchemy does not correlate a
# subquery with the target of an INSERT's RETURNING (it would read the whole table again).
_SAME = 'FROM deliveries AS other WHERE other."key" = deliveries."key"'
BEHIND: sa.Label[Any] = sa.literal_column(
    f"EXISTS (SELECT 1 {_SAME} AND other.id < deliveries.id"
    f" AND other.status IN ('{PENDING}', '{SENDING}') AND other.method != '{NOTICE}')"
).label("behind")
OUTDATED: sa.Label[Any] = sa.literal_column(
    f"EXISTS (SELECT 1 {_SAME} AND other.method = '{UPDATE}' AND other.id > deliveries.id"
    f" AND other.status IN ('{PENDING}', '{SENDING}', '{DONE}'))"
).label("outdated")
LANDED: sa.Label[Any] = sa.literal_column(
    f"(SELECT other.result_ts {_SAME} AND other.method = '{POST}' ORDER BY other.id DESC LIMIT 1)"
).label("landed")
WAITING_BEHIND: sa.Label[Any] = sa.literal_column(
    f"EXISTS (SELECT 1 {_SAME} AND other.id > deliveries.id AND other.status = '{PENDING}')"
).label("waiting")


# The rows go as parameters, not as `.values([...])`: SQLAlchemy still sends one multi-row INSERT
# ("insertmanyvalues", https://docs.sqlalchemy.org/en/20/core/connections.html#engine-insertmanyvalues)
# but compiles it once, where a multi-VALUES construct has no cache key and was compiled anew for
# every reply (about 8 % of the bot's CPU in bench/approval_cost.py's profile).
WRITE: sa.Insert = deliveries.insert().returning(deliveries.c.id, BEHIND, OUTDATED, LANDED)


def write(rows: list[dict[str, Any]], *, now: datetime, lease: timedelta) -> list[dict[str, Any]]:
    """WRITE's parameters: the rows in order, the first claimed (sending, one attempt)."""
    first, *rest = rows
    claimed = {**first, "status": SENDING, "attempts": 1, "lease_until": now + lease}
    return [claimed, *({**row, "lease_until": None} for row in rest)]


def claim(row_id: int, *, now: datetime, lease: timedelta, due: bool) -> sa.Update:
    """Row `row_id` → sending, when it is pending and due (any pending row when not `due`: it
    was waiting its turn, which has come) or its lease ran out; returns it with what sending
    it needs, or nothing when another attempt has it."""
    pending = deliveries.c.status == PENDING
    if due:
        pending = sa.and_(pending, deliveries.c.next_at <= now)
    lapsed = sa.and_(deliveries.c.status == SENDING, deliveries.c.lease_until < now)
    return (
        deliveries.update()
        .where(deliveries.c.id == row_id, sa.or_(pending, lapsed))
        .values(status=SENDING, lease_until=now + lease, attempts=deliveries.c.attempts + 1)
        .returning(*deliveries.c, BEHIND, OUTDATED, LANDED)
    )


def wait(row_id: int, *, next_at: datetime, attempts: int) -> sa.Update:
    """Row `row_id`, claimed but behind an earlier row of its message, back to pending (its
    claim was no attempt); returns whether a row before it still waits. When none does, that
    row finished while this one was claimed and saw nothing pending behind it, so nothing
    will wake this one: its turn has come. (On PostgreSQL the two statements may overlap and
    both miss; the worker's pass at `next_at` sends it then.)"""
    statement = (
        deliveries.update()
        .where(deliveries.c.id == row_id)
        .values(status=PENDING, next_at=next_at, attempts=attempts, lease_until=None)
    )
    return statement.returning(BEHIND)


# Built once, their values given as parameters: building a statement and making its cache key
# took as long as running it (350 of 700 µs of CPU for a finish, on either database), and every
# row is finished (ten an approval), every keyed post looked up first.

# A row finished: FINISH with `finish(…)`'s parameters; returns whether rows of the same message
# wait behind it (never, for a row without a key: NULL equals no key).
FINISH: sa.Update = (
    deliveries.update().where(deliveries.c.id == sa.bindparam("row_id")).returning(WAITING_BEHIND)
)


def finish(row_id: int, **values: Any) -> dict[str, Any]:
    """FINISH's parameters: row `row_id` set to `values` (their names make the SET clause)."""
    return {"row_id": row_id, **values}


# Where the post of the message `key` names went, when one was written already.
POSTED: sa.Select[Any] = (
    sa.select(deliveries.c.channel, deliveries.c.result_ts)
    .where(deliveries.c.key == sa.bindparam("key"), deliveries.c.method == POST)
    .order_by(deliveries.c.id)
    .limit(1)
)
