"""Alembic environment of the recipes sample: the connection comes from ``migrate.upgrade``."""

from __future__ import annotations

from alembic import context

from tollway.samples.recipes.migrate import VERSION_TABLE
from tollway.samples.recipes.models import Recipe

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Recipe.metadata,  # importing models registers every table
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
