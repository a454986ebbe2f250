"""usage: WebSocket messages each way (a session is one call of status class 1)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(
            sa.Column("messages_in", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("messages_out", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("messages_out")
        batch.drop_column("messages_in")
