"""State: approvals, audit, schedules and report history, on SQLite or PostgreSQL.

SQLAlchemy Core over an async engine (aiosqlite / asyncpg); the schema is owned by the Alembic
migrations in `bot/storage/migrations/` and `metadata` below mirrors it. Times are stored in UTC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage import sqlite


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, whatever the backend keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command_line", sa.Text, nullable=False),
    sa.Column("command_path", sa.String(100), nullable=False),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("args_preview", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("requester", sa.String(40), nullable=False),
    sa.Column("origin", sa.String(40), nullable=False, server_default="user"),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("message_ts", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("decided_by", sa.String(40)),
    sa.Column("decided_at", UTCDateTime),
    sa.Column("reason", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("runner", sa.String(200)),
    sa.Column("heartbeat_at", UTCDateTime),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("approve_label", sa.String(60), nullable=False, server_default="Approve"),
    sa.Column("reject_label", sa.String(60), nullable=False, server_default="Reject"),
    sa.Column("snooze_hours", sa.Integer),
    # The validated arguments as text by field name (what the card showed and what runs).
    sa.Column("args", sa.Text),
    # Fixed by the policy in force when it was requested (bot/approvals/policy.py).
    sa.Column("approvals_needed", sa.Integer, nullable=False, server_default="1"),
    sa.Column("approver_role", sa.String(20)),
    sa.Column("rules", sa.Text),
    # A person's resolution of an unknown outcome: done | not done.
    sa.Column("resolution", sa.String(20)),
    sa.Column("resolved_by", sa.String(40)),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolution_reason", sa.Text),
    # Who was told (bot/approvals/notices.py): the approvers' direct messages were queued, and the
    # reminder in the card's thread at half the time to live; each set once, by one replica.
    sa.Column("notified_at", UTCDateTime),
    sa.Column("reminded_at", UTCDateTime),
    # When its end was handed to the outbox: the final card, the result, the requester's note
    # (bot/approvals/shown.py); unset on a final row, the sweeper shows it again.
    sa.Column("shown_at", UTCDateTime),
)

approval_votes = sa.Table(
    "approval_votes",
    metadata,
    sa.Column("approval_id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.String(40), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
    # Why this person approved, when a rule asks (`reason: required`); shown on the card.
    sa.Column("reason", sa.Text),
)

# Each person's step-up enrolment (RFC 6238 TOTP), shared by every replica: the seed only ever
# sealed (bot/storage/sealed.py), the last time-step accepted (a code passes once), and the
# wrong codes in a row that lock step-up for a while (bot/approvals/stepup.py).
step_up = sa.Table(
    "step_up",
    metadata,
    sa.Column("user_id", sa.String(40), primary_key=True),
    sa.Column("seed", sa.Text, nullable=False),
    sa.Column("enrolled_at", UTCDateTime, nullable=False),
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("last_step", sa.BigInteger),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", UTCDateTime),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("user_id", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("command", sa.String(120), nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("decision", sa.String(30), nullable=False),
    sa.Column("outcome", sa.String(30), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("provider_status", sa.Integer),
    sa.Column("duration_ms", sa.Integer),
    sa.Column("approval_id", sa.Integer),
    # The hash chain (bot/storage/chain.py): the row's place, the previous row's hash, its own.
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("seq", name="uq_audit_seq"),
)

# The audit chain's anchors (bot/anchors.py): a row of the chain (`seq`, `hash`) posted to the
# billing channel, daily (one per local `day`, whichever replica takes it) or on command; `sent_at`
# once handed to the outbox, `ts` once it landed in Slack.
audit_anchors = sa.Table(
    "audit_anchors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("by", sa.String(40), nullable=False),
    sa.Column("how", sa.String(20), nullable=False),
    sa.Column("day", sa.Date),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("ts", sa.String(40)),
    sa.UniqueConstraint("day", name="uq_audit_anchors_day"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(60), nullable=False),
    sa.Column("cron", sa.String(120), nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("next_run_at", UTCDateTime),
    sa.Column("last_run_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

stored_commands = sa.Table(
    "stored_commands",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("user_id", sa.String(40)),
    sa.Column("key", sa.String(80), index=True),
    sa.Column("ts", sa.String(40)),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("content", sa.LargeBinary),
    sa.Column("response_url", sa.Text),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime),
    sa.Column("result_ts", sa.String(40)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("done_at", UTCDateTime),
    sa.Index("ix_deliveries_status_next_at", "status", "next_at"),
)

# A Workflow Builder step's run (bot/steps.py), by Slack's `function_execution_id`: who it runs
# as, the approval it asked for, what the approved run produced until its completion is queued
# (`queued_at`, set once, in the transaction that queues it), and how Slack took the completion.
# No token: completions use the app's own bot token, never the event's `bot_access_token`.
step_runs = sa.Table(
    "step_runs",
    metadata,
    sa.Column("function_execution_id", sa.String(80), primary_key=True),
    sa.Column("workflow_execution_id", sa.String(80), nullable=False),
    sa.Column("callback_id", sa.String(100), nullable=False),
    sa.Column("requested_by", sa.String(40), nullable=False),
    sa.Column("approval_id", sa.Integer, index=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("outputs", sa.Text),
    sa.Column("file", sa.LargeBinary),
    sa.Column("file_name", sa.String(200)),
    sa.Column("queued_at", UTCDateTime),
    sa.Column("result", sa.String(40)),
    sa.Column("permalink", sa.Text),
    sa.Column("finished_at", UTCDateTime),
)

report_history = sa.Table(
    "report_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(60), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)


def async_url(url: str) -> str:
    """`sqlite:///x.db` → aiosqlite, `postgres(ql)://` → asyncpg; explicit drivers are kept."""
    scheme, sep, rest = url.partition("://")
    if "+" in scheme:
        return url
    if scheme == "sqlite":
        return f"sqlite+aiosqlite{sep}{rest}"
    if scheme in {"postgres", "postgresql"}:
        return f"postgresql+asyncpg{sep}{rest}"
    return url


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine.sync_engine, "do_connect")
        def _one_call_per_statement(dialect: Any, _: Any, cargs: Any, cparams: Any) -> Any:
            # aiosqlite's connection, one call to its thread per statement (bot.storage.sqlite)
            return dialect.loaded_dbapi.connect(*cargs, async_creator_fn=sqlite.connect, **cparams)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # A restart or failover closes every pooled connection. asyncpg sees the server's close on
    # an idle connection as it happens (its socket stays read by the event loop), so checkout
    # asks the connection whether it is closed, and the pool opens a new one in its place
    # (DisconnectionError at checkout,
    # https://docs.sqlalchemy.org/en/20/core/pooling.html#disconnect-handling-pessimistic).
    # That is pool_pre_ping's guarantee without its round trips: SQLAlchemy's asyncpg ping is
    # BEGIN, a query and ROLLBACK, three of the four to six round trips of each transaction.
    # A connection cut while a statement runs fails that statement either way; its caller
    # handles it, and SQLAlchemy then discards every connection opened before the cut
    # (docs/operations.md, "PostgreSQL restarts").
    # pool_size: 20 approvals at once held up to 15 connections with SQLAlchemy's default of 5,
    # and every connection over the 5 kept was opened and closed again (a server process forked
    # each time): 2.5 new connections per approval in bench/approval_cost.py, 0.25 with 20 kept.
    # A replica holds at most 30 (20 + 10 overflow): two replicas stay well under PostgreSQL's
    # default max_connections of 100.
    engine = create_async_engine(url, pool_size=20, max_overflow=10)

    @sa.event.listens_for(engine.sync_engine, "checkout")
    def _closed(_: Any, record: Any, __: Any) -> None:
        if record.driver_connection.is_closed():
            raise sa.exc.DisconnectionError("the server closed the connection")

    return engine


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """`engine`, for code whose every transaction is one statement (the outbox): on PostgreSQL
    each runs in autocommit, one round trip where asyncpg sends BEGIN, the statement and COMMIT
    (or ROLLBACK after a read). A single statement is atomic on its own, so nothing changes
    but the round trips. SQLite's driver begins in the statement's own call already, and
    switching its isolation level costs a call to its thread each way: it is left as it is."""
    if is_sqlite(engine):
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def migrations_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["url"] = async_url(url)
    return config


def upgrade_sync(url: str) -> None:
    """Apply every migration. Runs its own event loop: call it from a thread or the CLI."""
    from alembic import command

    command.upgrade(migrations_config(url), "head")


async def upgrade(url: str) -> None:
    await asyncio.to_thread(upgrade_sync, url)


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:
        return False
    return True


def storable(text: str) -> str:
    """Text as every supported database keeps it: PostgreSQL's text type refuses the NUL
    character (https://www.postgresql.org/docs/current/datatype-character.html), which typed
    input can carry, so it becomes U+FFFD, the replacement character."""
    return text.replace("\x00", "\ufffd")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ReportHistory:
    """`commands.base.History` over the report_history table (JSON figures per run)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, kind: str, data: Mapping[str, Any]) -> None:
        payload = json.dumps(dict(data), default=str, sort_keys=True)
        async with self.engine.begin() as conn:
            await conn.execute(report_history.insert().values(kind=kind, at=utcnow(), data=payload))

    async def recent(self, kind: str, limit: int) -> list[tuple[datetime, dict[str, Any]]]:
        query = (
            sa.select(report_history.c.at, report_history.c.data)
            .where(report_history.c.kind == kind)
            .order_by(report_history.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(at, json.loads(data)) for at, data in reversed(rows)]


STORED_PREFIX = "stored:"
MAX_BUTTON_VALUE = 2000


class StoredCommands:
    """Button commands longer than Slack lets a button carry (2,000 characters) are kept here,
    and the button carries `stored:<id>` instead."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def store(self, command: str) -> str:
        """A short stand-in for `command`."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                stored_commands.insert().values(command=command, created_at=utcnow())
            )
        key = result.inserted_primary_key[0] if result.inserted_primary_key else None
        return f"{STORED_PREFIX}{key}"

    async def load(self, reference: str) -> str | None:
        key = reference.removeprefix(STORED_PREFIX)
        if not key.isdigit():
            return None
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    sa.select(stored_commands.c.command).where(stored_commands.c.id == int(key))
                )
            ).scalar()
        return str(found) if found is not None else None
