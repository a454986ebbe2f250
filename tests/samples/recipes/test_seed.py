"""Seed data, migrations on start-up, the module-level app and the ``python -m`` command."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, inspect, select

from tollway.samples.recipes import create_app
from tollway.samples.recipes.__main__ import main
from tollway.samples.recipes.db import make_engine, session_factory
from tollway.samples.recipes.migrate import downgrade, upgrade
from tollway.samples.recipes.models import Recipe, User
from tollway.samples.recipes.security import Passwords
from tollway.samples.recipes.seed import RECIPES, seed

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD, login, make_settings

pytestmark = pytest.mark.anyio


def counts(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    with session_factory(engine)() as db:
        users = db.scalar(select(func.count()).select_from(User))
        recipes = db.scalar(select(func.count()).select_from(Recipe))
    engine.dispose()
    return users or 0, recipes or 0


def test_seed_is_idempotent(database_url: str) -> None:
    settings = make_settings(database_url)
    engine = make_engine(database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    passwords = Passwords(64, 1)
    first = seed(sessions, settings, passwords)
    second = seed(sessions, settings, passwords)
    engine.dispose()
    assert (first.superuser_created, first.recipes_created) == (True, len(RECIPES))
    assert (second.superuser_created, second.recipes_created) == (False, 0)
    assert counts(database_url) == (1, 3)


async def test_lifespan_migrates_and_seeds_a_superuser_who_can_log_in(database_url: str) -> None:
    app = create_app(make_settings(database_url, seed_on_startup=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://recipes.test") as client:
            headers = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
            me = (await client.get("/api/v1/auth/me", headers=headers)).json()
            mine = await client.get("/api/v1/recipes/my-recipes/", headers=headers)
    assert me["is_superuser"] is True
    assert [r["label"] for r in mine.json()["results"]] == [r.label for r in RECIPES]


def test_migrations_go_down_and_up_and_keep_to_their_own_version_table(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    assert {"recipes", "recipe_users", "recipes_alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    assert "alembic_version" not in inspect(engine).get_table_names()
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"recipes_alembic_version"}
    upgrade(engine)
    engine.dispose()


def test_seed_command_uses_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory
    monkeypatch.setenv("RECIPES_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("RECIPES_PASSWORD_MEMORY_KIB", "64")
    monkeypatch.setenv("RECIPES_PASSWORD_TIME_COST", "1")
    assert main(["seed"]) == 0
    assert "superuser created, 3 recipe(s) added" in capsys.readouterr().out
    assert main(["seed"]) == 0
    assert "superuser already there, 0 recipe(s) added" in capsys.readouterr().out
    assert counts(f"sqlite:///{tmp_path}/cli.db") == (1, 3)
