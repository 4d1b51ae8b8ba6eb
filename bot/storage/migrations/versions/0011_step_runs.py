"""Workflow Builder steps: one row per step run, by Slack's `function_execution_id`, linked to the
approval it asked for (nullable: a read step asks for none). Nothing to fill in for existing
databases: steps start with this revision.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_runs",
        sa.Column("function_execution_id", sa.String(80), primary_key=True),
        sa.Column("workflow_execution_id", sa.String(80), nullable=False),
        sa.Column("callback_id", sa.String(100), nullable=False),
        sa.Column("requested_by", sa.String(40), nullable=False),
        sa.Column("approval_id", sa.Integer),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("outputs", sa.Text),
        sa.Column("file", sa.LargeBinary),
        sa.Column("file_name", sa.String(200)),
        sa.Column("queued_at", UTCDateTime),
        sa.Column("result", sa.String(40)),
        sa.Column("permalink", sa.Text),
        sa.Column("finished_at", UTCDateTime),
    )
    op.create_index("ix_step_runs_approval_id", "step_runs", ["approval_id"])


def downgrade() -> None:
    op.drop_index("ix_step_runs_approval_id", "step_runs")
    op.drop_table("step_runs")
