"""The append-only audit log: every command, approval decision and scheduled run.

Arguments are stored as their redacted preview (secret fields masked, known secret values
replaced); the raw command text is never stored. Details are plain text (`detail_text`).
Listeners (`listen`) see each entry once it is written, with its row ID: the metrics and the one
log line per command come from here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.mrkdwn import plain
from bot.storage.store import audit, storable, utcnow
from commands.secrets import redact, redact_any
from commands.words import clip

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Entry:
    user_id: str
    channel: str
    command: str
    args: dict[str, str]
    decision: str  # ran, requested, approved, rejected, refused, invalid, expired, scheduled…
    outcome: str  # ok, error, unknown, pending, denied…
    detail: str = ""
    provider: str = ""
    provider_status: int | None = None
    duration_ms: int | None = None
    approval_id: int | None = None


DETAIL_LIMIT = 2000


def detail_text(detail: str) -> str:
    """A detail as the audit log keeps it: redacted, plain text (no Slack markup such as
    `*bold*`, backticks or `<url|text>`), on one line, cut between words with an ellipsis."""
    return clip(plain(redact(detail)), DETAIL_LIMIT)


# Sees each entry after it is written, with its audit row ID (None when writing failed).
Listener = Callable[[Entry, int | None], None]


class AuditLog:
    def __init__(self, engine: AsyncEngine, *, listeners: Sequence[Listener] = ()) -> None:
        self.engine = engine
        self.listeners = tuple(listeners)

    async def invalid(
        self, name: str, args: dict[str, str], user: str, channel: str, detail: str
    ) -> None:
        """Input that was refused before anything ran (`name` is the command, `/slash …`)."""
        await self.record(
            Entry(
                user_id=user,
                channel=channel,
                command=name,
                args=args,
                decision="invalid",
                outcome="rejected input",
                detail=detail,
                provider=name.removeprefix("/").split(" ")[0],
            )
        )

    async def record(self, entry: Entry, *, at: datetime | None = None) -> None:
        row = {
            "at": at or utcnow(),
            "user_id": storable(entry.user_id),
            "channel": storable(entry.channel),
            "command": storable(entry.command[:120]),
            "args": json.dumps(redact_any(entry.args), ensure_ascii=False, sort_keys=True),
            "decision": storable(entry.decision),
            "outcome": storable(entry.outcome),
            "detail": storable(detail_text(entry.detail)),
            "provider": storable(entry.provider),
            "provider_status": entry.provider_status,
            "duration_ms": entry.duration_ms,
            "approval_id": entry.approval_id,
        }
        audit_id: int | None = None
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(audit.insert().values(**row))
                key = result.inserted_primary_key
                audit_id = int(key[0]) if key and key[0] is not None else None
        finally:
            for listener in self.listeners:
                try:
                    listener(entry, audit_id)
                except Exception:  # a listener must never lose an audit row or a command
                    log.exception("an audit listener failed")

    async def recent(
        self, limit: int, *, user: str | None = None, provider: str | None = None
    ) -> list[dict[str, Any]]:
        query = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if user:
            query = query.where(audit.c.user_id == user)
        if provider:
            query = query.where(audit.c.provider == provider)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]

    async def between(self, start: date, end: date, tz: ZoneInfo) -> list[dict[str, Any]]:
        since = datetime.combine(start, time.min, tz)
        until = datetime.combine(end + timedelta(days=1), time.min, tz)
        query = sa.select(audit).where(audit.c.at >= since, audit.c.at < until).order_by(audit.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [dict(r) for r in rows]


CSV_COLUMNS = (
    "id",
    "at",
    "user_id",
    "channel",
    "command",
    "args",
    "decision",
    "outcome",
    "detail",
    "provider",
    "provider_status",
    "duration_ms",
    "approval_id",
)


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = []
        for column in CSV_COLUMNS:
            value = row.get(column)
            if isinstance(value, datetime):
                value = value.isoformat()
            values.append("" if value is None else redact(str(value)))
        writer.writerow(values)
    return buffer.getvalue().encode()
