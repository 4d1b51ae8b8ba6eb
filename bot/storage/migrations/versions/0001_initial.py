"""Approvals, audit, schedules and report history.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
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
        sa.Column("status", sa.String(20), nullable=False),
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
    )
    op.create_index("ix_approvals_status", "approvals", ["status"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
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
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_table(
        "schedules",
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
    op.create_table(
        "report_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_report_history_kind", "report_history", ["kind"])


def downgrade() -> None:
    op.drop_table("report_history")
    op.drop_table("schedules")
    op.drop_table("audit")
    op.drop_table("approvals")
