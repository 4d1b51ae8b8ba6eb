"""Step-up enrolments, and the reason each approval gave.

`step_up` keeps one row per enrolled person: the TOTP seed sealed under BILLING_SECRET_KEY
(never in plain), when the first code confirmed it, the last RFC 6238 time-step accepted (a code
passes once, on every replica) and the wrong codes in a row that lock step-up for a while.
`approval_votes.reason` is why each approver approved, when a rule asks for a reason.

Revision ID: 0008
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.store import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_up",
        sa.Column("user_id", sa.String(40), primary_key=True),
        sa.Column("seed", sa.Text, nullable=False),
        sa.Column("enrolled_at", UTCDateTime, nullable=False),
        sa.Column("confirmed_at", UTCDateTime),
        sa.Column("last_step", sa.BigInteger),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", UTCDateTime),
    )
    with op.batch_alter_table("approval_votes") as batch:
        batch.add_column(sa.Column("reason", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("approval_votes") as batch:
        batch.drop_column("reason")
    op.drop_table("step_up")
