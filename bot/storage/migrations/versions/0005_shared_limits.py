"""Provider limits shared by replicas: SMSC document turns and VoIPcloud budget windows.

See `bot/storage/limits.py`. Keys are digests of a login or token, never the value itself.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "limit_turns",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("last_done", UTCDateTime, nullable=False),
    )
    op.create_table(
        "limit_slots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_limit_slots_key_at", "limit_slots", ["key", "at"])


def downgrade() -> None:
    op.drop_index("ix_limit_slots_key_at", table_name="limit_slots")
    op.drop_table("limit_slots")
    op.drop_table("limit_turns")
