"""backends: pools of targets, health checks, circuit breaker, retries, TLS, connection limits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00

Existing backends keep their single ``url`` and get the defaults: no health check, no circuit
breaker, no retries, TLS verified against the system store, pooled connections kept as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backends") as batch:
        batch.add_column(sa.Column("targets", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("balance", sa.String(length=30), nullable=False, server_default="round-robin")
        )
        batch.add_column(sa.Column("health_check", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("circuit_breaker", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tls", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("max_idle_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("max_requests", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backends") as batch:
        for column in (
            "max_requests",
            "max_idle_seconds",
            "tls",
            "retries",
            "circuit_breaker",
            "health_check",
            "balance",
            "targets",
        ):
            batch.drop_column(column)
