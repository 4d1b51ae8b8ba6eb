"""Audit anchors: the audit chain's head as posted to the billing channel, daily and on command.

One row per anchor: the row it names (`seq`, `hash`), when and by whom it was taken, how
(`daily` or `command`), the local day of a daily anchor (unique: one per day, whichever replica
takes it), the channel, when it was handed to the outbox and the Slack message's `ts` once it
landed. Nothing to fill in for existing databases: anchors start with this revision.

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_anchors",
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


def downgrade() -> None:
    op.drop_table("audit_anchors")
