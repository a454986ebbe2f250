from __future__ import annotations

from sqlalchemy import inspect

from tollway.db.migrate import current_revision, downgrade, head_revision, upgrade
from tollway.db.models import Base
from tollway.db.session import make_engine


def test_migrations_create_every_model_table_and_reach_head(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert current_revision(engine) == head_revision()
    upgrade(engine)  # running again on every start is harmless
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_migrations_downgrade_to_empty_and_back(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert not set(Base.metadata.tables) & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()
