"""Fixtures for the recipes sample: an app per test on SQLite and PostgreSQL, sign-in helpers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from tollway.samples.recipes import RecipesSettings, create_app
from tollway.samples.recipes.db import make_engine, session_factory
from tollway.samples.recipes.deps import get_db

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin-password-1"


def make_settings(database_url: str, **overrides: object) -> RecipesSettings:
    """Settings for tests: nothing from the environment or a ``.env`` file."""
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": "test-secret-0123456789abcdef-0123456789",
        "first_superuser": ADMIN_EMAIL,
        "first_superuser_password": ADMIN_PASSWORD,
        "ideas_sources": [],
        "seed_on_startup": False,
        # Cheap hashes keep the suite fast; production keeps pwdlib's Argon2 defaults.
        "password_memory_kib": 64,
        "password_time_cost": 1,
        **overrides,
    }
    return RecipesSettings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> RecipesSettings:
    return make_settings(database_url)


@pytest.fixture
def clock() -> Callable[[], float]:
    """What the app times requests with; a test parametrizes ``clock`` to control it."""
    return time.perf_counter


@pytest.fixture
def app(settings: RecipesSettings, clock: Callable[[], float]) -> Iterator[FastAPI]:
    """The app, with its database session swapped by a dependency override as the seed does."""
    app = create_app(settings, clock=clock)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)

    def override_get_db() -> Iterator[Session]:
        with sessions() as session:
            yield session

    app.dependency_overrides[get_db] = override_get_db
    yield app
    app.dependency_overrides.clear()
    engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for ``app`` with its lifespan running (migrations, HTTP client)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://recipes.test") as client:
            yield client


async def signup(
    client: httpx.AsyncClient, email: str, password: str = "password-123", **extra: object
) -> dict:
    response = await client.post(
        "/api/v1/auth/signup", json={"email": email, "password": password, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def login(
    client: httpx.AsyncClient, email: str, password: str = "password-123"
) -> dict[str, str]:
    """Authorization headers for ``email``."""
    response = await client.post(
        "/api/v1/auth/login", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def new_user(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Sign ``email`` up and return its authorization headers."""
    await signup(client, email)
    return await login(client, email)


async def add_recipe(
    client: httpx.AsyncClient, headers: dict[str, str], label: str = "Soup"
) -> dict:
    body = {"label": label, "source": "Test Kitchen", "url": "https://example.com/soup"}
    response = await client.post("/api/v1/recipes/", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()
