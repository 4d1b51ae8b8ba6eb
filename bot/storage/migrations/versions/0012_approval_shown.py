"""When an approval's end was shown: its final card, its result and its requester's note handed
to the outbox (bot/approvals/shown.py). A final row whose `shown_at` is unset is shown again by
the sweeper. Rows already final before this revision were shown as they ended (or never will
be): they count as shown, so no old result is posted again after the upgrade.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("shown_at", UTCDateTime))
    op.execute(
        "UPDATE approvals SET shown_at = COALESCE(finished_at, decided_at, created_at)"
        " WHERE status NOT IN ('pending', 'executing')"
    )


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("shown_at")
