"""usage: calls per latency bucket (latency_0 ... latency_17), an index on minute

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00

Bucket ``i`` counts the calls that took ``[2**(i-2), 2**(i-1))`` ms (bucket 0: under 0.5 ms,
bucket 17: 32 768 ms and more); see ``tollway.db.models.latency_bucket``. Rows from before keep
0 in every bucket: the portal estimates percentiles from the calls that have buckets. The
index on ``minute`` serves the admins' analytics, which look at all traffic in a time window (the
primary key starts with the subscription, which the developers' pages filter on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BUCKETS = 18  # frozen here: a later change of the scheme is a new migration


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        for i in range(BUCKETS):
            batch.add_column(
                sa.Column(f"latency_{i}", sa.Integer(), nullable=False, server_default="0")
            )
    op.create_index(op.f("ix_usage_minute"), "usage", ["minute"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_minute"), table_name="usage")
    with op.batch_alter_table("usage") as batch:
        for i in range(BUCKETS):
            batch.drop_column(f"latency_{i}")
