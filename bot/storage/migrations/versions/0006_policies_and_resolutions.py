"""Approval policies (several approvals, an approver role) and resolutions of unknown outcomes.

`approvals_needed`, `approver_role` and `rules` are fixed when a request is made, from the
policy file then in force. Each approval is a row of `approval_votes` (one per person), so the
last one needed claims the request with the same single conditional UPDATE as before. An
unknown outcome is closed by a person's resolution (`done` or `not done`), kept beside it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(
            sa.Column("approvals_needed", sa.Integer, nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("approver_role", sa.String(20)))
        batch.add_column(sa.Column("rules", sa.Text))
        batch.add_column(sa.Column("resolution", sa.String(20)))
        batch.add_column(sa.Column("resolved_by", sa.String(40)))
        batch.add_column(sa.Column("resolved_at", UTCDateTime))
        batch.add_column(sa.Column("resolution_reason", sa.Text))
    op.create_table(
        "approval_votes",
        sa.Column("approval_id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.String(40), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("approval_votes")
    with op.batch_alter_table("approvals") as batch:
        for name in (
            "resolution_reason",
            "resolved_at",
            "resolved_by",
            "resolution",
            "rules",
            "approver_role",
            "approvals_needed",
        ):
            batch.drop_column(name)
