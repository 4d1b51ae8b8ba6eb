"""The audit log as a hash chain: each row's sequence number, the previous row's hash and its own.

The rows that exist are chained in the order of their IDs (the order they were written), by the
same encoding new rows use (`bot/storage/chain.py`), a thousand at a time. Sequence numbers are
unique, so two appends can never take the same place. Replicas of an older version must be
stopped before this runs: a row they wrote afterwards would have no place in the chain, so the
database refuses it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.chain import FIELDS, Link, seal
from bot.storage.store import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 1000

# The audit table as this revision finds it (not `store.audit`, which follows later revisions).
rows = sa.table(
    "audit",
    sa.column("id", sa.Integer),
    sa.column("at", UTCDateTime),
    *(sa.column(name) for name in FIELDS if name != "at"),
    sa.column("seq", sa.BigInteger),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
)


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger))
        batch.add_column(sa.Column("prev_hash", sa.String(64)))
        batch.add_column(sa.Column("hash", sa.String(64)))
    connection = op.get_bind()
    update = (
        rows.update()
        .where(rows.c.id == sa.bindparam("row_id"))
        .values(
            seq=sa.bindparam("new_seq"),
            prev_hash=sa.bindparam("new_prev"),
            hash=sa.bindparam("new_hash"),
        )
    )
    head: Link | None = None
    last_id = 0
    while True:
        query = sa.select(rows).where(rows.c.id > last_id).order_by(rows.c.id).limit(BATCH)
        found = [dict(r) for r in connection.execute(query).mappings()]
        if not found:
            break
        links = []
        for row in found:
            sealed = seal(row, head)
            head = Link(sealed["seq"], sealed["hash"])
            links.append(
                {
                    "row_id": row["id"],
                    "new_seq": sealed["seq"],
                    "new_prev": sealed["prev_hash"],
                    "new_hash": sealed["hash"],
                }
            )
        connection.execute(update, links)
        last_id = found[-1]["id"]
    with op.batch_alter_table("audit") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger, nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_audit_seq", ["seq"])


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_constraint("uq_audit_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
