"""The outbox: everything the bot has to show in Slack, kept until Slack has taken it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40)),
        sa.Column("key", sa.String(80)),
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
    )
    op.create_index("ix_deliveries_status_next_at", "deliveries", ["status", "next_at"])
    op.create_index("ix_deliveries_key", "deliveries", ["key"])


def downgrade() -> None:
    op.drop_table("deliveries")
