"""Approvals store their validated arguments, not a command line to parse again.

A line re-parsed at approval time could run something other than the card showed
(`description="amount=5000"` came back as `amount=5000`). Rows requested before this revision
carry in `args_preview` exactly the values their card showed, so those become their arguments.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("args", sa.Text))
    op.execute("UPDATE approvals SET args = args_preview WHERE args IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("args")
