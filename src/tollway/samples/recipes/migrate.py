"""Apply the recipes sample's own Alembic migrations (on start-up or ``python -m ... migrate``).

The version table is ``recipes_alembic_version``, so the sample can share a database with
Tollway's store (whose migrations use Alembic's default table) without the two colliding.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "recipes_alembic_version"


def alembic_config() -> Config:
    """An Alembic config pointing at this package's migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the recipes schema to ``revision`` (default: latest). Safe to run on every start."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the recipes schema back to ``revision`` (``base`` drops every table)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
