"""The module-level app behind the gateway, as ``tollway demo`` serves it: prefix stripped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.gateway.conftest import SECRET, Harness, apply
from tollway.db.migrate import upgrade
from tollway.db.session import make_engine, session_factory
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.anyio

CONFIG = {
    "backends": {"recipes": {"app": "tollway.samples.recipes:app"}},
    "apis": {"recipes": {"path": "/recipes", "backend": "recipes"}},
    "products": {"starter": {"apis": ["recipes"]}},
}


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    # The demo's default: ./recipes-demo.db in the working directory, migrated and seeded.
    monkeypatch.chdir(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path}/tollway.db")
    upgrade(engine)
    apply(engine, CONFIG)
    gateway = create_gateway(Settings(secret_key=SECRET), engine=engine)  # type: ignore[call-arg]
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Harness(gateway, client, session_factory(engine))
    await gateway.shutdown()
    engine.dispose()


async def test_seeded_recipes_and_signup_through_the_gateway(
    gateway: Harness, tmp_path: Path
) -> None:
    key = {"X-API-Key": gateway.subscribe().primary}
    await gateway.refresh()
    search = await gateway.client.get(
        "/recipes/api/v1/recipes/search/?keyword=chicken", headers=key
    )
    assert search.status_code == 200
    assert [r["label"] for r in search.json()["results"]] == [
        "Chicken Vesuvio",
        "Chicken Paprikash",
    ]
    assert "x-process-time" in search.headers

    body = {"email": "ada@example.com", "password": "password-123"}
    signup = await gateway.client.post("/recipes/api/v1/auth/signup", json=body, headers=key)
    assert signup.status_code == 201
    page = await gateway.client.get("/recipes/", headers=key)
    assert "Chicken Vesuvio" in page.text
    assert (tmp_path / "recipes-demo.db").exists()
    assert (await gateway.client.get("/recipes/api/v1/recipes/1")).status_code == 401  # no key
