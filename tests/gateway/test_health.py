"""Health and readiness, including a store that cannot be reached."""

# In-process, not on both transports: /-/health and /-/ready are Tollway's own (ASGI) pages.

from __future__ import annotations

import httpx
import pytest

from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..servers import free_port
from .conftest import Harness

pytestmark = pytest.mark.anyio


async def test_ready_reports_config_and_keys(harness: Harness) -> None:
    harness.subscribe()
    await harness.refresh()
    health = await harness.client.get("/-/health")
    ready = await harness.client.get("/-/ready")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert ready.status_code == 200
    assert ready.json()["apis"] == 4 and ready.json()["active_keys"] == 2


async def test_unreachable_store_is_not_ready_but_alive() -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    gateway = create_gateway(Settings(database_url=url))
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://g.test") as client:
            assert (await client.get("/-/health")).status_code == 200
            ready = await client.get("/-/ready")
            assert ready.status_code == 503
            assert ready.json()["store"] == "unreachable"
            early = await client.get("/names/generate_name")
            assert early.status_code == 503  # no configuration loaded yet
            assert early.json()["type"] == "/-/problems/not-ready"
            assert "password" not in ready.text and "Traceback" not in ready.text
    finally:
        await gateway.shutdown()
