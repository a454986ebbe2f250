"""identities: keyed by issuer + subject instead of provider name + subject

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02 09:00:00

Existing identities keep ``issuer`` NULL: the configuration that names their issuer lives in
the environment, not the database. The next sign-in through the same provider name fills it
in (tollway.services.identities), after which only that issuer matches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("user_identities") as batch:
        batch.add_column(sa.Column("issuer", sa.String(length=500), nullable=True))
        batch.drop_constraint("uq_user_identities_provider", type_="unique")
        batch.create_unique_constraint("uq_user_identities_issuer", ["issuer", "subject"])


def downgrade() -> None:
    with op.batch_alter_table("user_identities") as batch:
        batch.drop_constraint("uq_user_identities_issuer", type_="unique")
        batch.create_unique_constraint("uq_user_identities_provider", ["provider", "subject"])
        batch.drop_column("issuer")
