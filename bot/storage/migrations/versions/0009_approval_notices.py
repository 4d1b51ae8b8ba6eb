"""Who was told about a request: its approvers (direct messages) and its thread (a reminder).

`notified_at` is set when the approvers' direct messages are queued, `reminded_at` when the
reminder at half the time to live is; each by one conditional UPDATE, so one replica sends them
once. Requests made before this revision were announced on their cards alone: they count as
notified, so nobody gets a direct message about an old request after the upgrade.

Revision ID: 0009
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("notified_at", UTCDateTime))
        batch.add_column(sa.Column("reminded_at", UTCDateTime))
    op.execute("UPDATE approvals SET notified_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("reminded_at")
        batch.drop_column("notified_at")
