"""The charts sample behind the gateway, configured as `tollway demo` configures it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tollway.config.apply import apply_config
from tollway.config.loader import load_config
from tollway.config.model import TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.session import session_factory, transaction
from tollway.demo.setup import demo_config_text
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.anyio

SECRET = "test-secret-key-0123456789"
# The demo's charts backend and API, alone, so this test does not depend on the other samples.
CHARTS_CONFIG: dict[str, Any] = {
    "backends": {"charts": {"app": "tollway.samples.charts:gateway_app"}},
    "apis": {"charts": {"path": "/charts", "backend": "charts", "title": "Charts"}},
    "products": {"starter": {"apis": ["charts"]}},
}


@pytest.fixture
async def gateway_client(
    sqlite_engine: Engine, sqlite_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway fronting the charts API, sending a valid subscription key."""
    sessions = session_factory(sqlite_engine)
    apply_config(
        sessions, TollwayConfig.model_validate(CHARTS_CONFIG), secret_box=SecretBox(SECRET)
    )
    with transaction(sessions) as session:
        user = users.create_user(session, "dev@example.com")
        issued = subscriptions.create_subscription(
            session, user, subscriptions.get_product(session, "starter")
        )
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=sqlite_engine)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway)
    headers = {"X-API-Key": issued.primary}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", headers=headers
    ) as client:
        yield client
    await gateway.shutdown()


def test_demo_fronts_the_prefixless_charts_app_at_charts() -> None:
    config = load_config(demo_config_text(), source="tollway-demo.yaml", env={})
    assert config.backends["charts"].app == CHARTS_CONFIG["backends"]["charts"]["app"]
    assert config.apis["charts"].path == "/charts"
    assert config.apis["charts"].backend == "charts"
    assert "charts" in config.products["starter"].apis


async def test_public_urls_do_not_double_the_prefix(gateway_client: httpx.AsyncClient) -> None:
    bar = await gateway_client.get("/charts/bar", params={"xvalues": "a,b", "yvalues": "1,2"})
    pie = await gateway_client.get("/charts/pie", params={"values": "1,2", "format": "svg"})
    doubled = await gateway_client.get("/charts/charts/pie", params={"values": "1,2"})
    assert (bar.status_code, bar.headers["content-type"]) == (200, "image/png")
    assert (pie.status_code, pie.headers["content-type"]) == (200, "image/svg+xml")
    assert bar.headers["cache-control"] == "public, max-age=86400"
    assert doubled.status_code == 404


async def test_problems_pass_through_the_gateway(gateway_client: httpx.AsyncClient) -> None:
    response = await gateway_client.get("/charts/pie", params={"values": "0"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "values: Cannot create a pie chart with single value of 0"


async def test_docs_show_the_public_paths(gateway_client: httpx.AsyncClient) -> None:
    doc = (await gateway_client.get("/docs/charts/openapi.json")).json()
    servers = [server["url"] for server in doc["servers"]]
    assert any(url.endswith("/charts") for url in servers)
    assert set(doc["paths"]) == {"/bar", "/pie"}
