"""Operation allow-lists and trusted-proxy handling of X-Forwarded-For."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tollway.settings import Settings
from tollway.site.compose import create_gateway

from .conftest import BASE_CONFIG, Harness, apply

pytestmark = pytest.mark.anyio

PUBLIC = {
    "path": "/public",
    "backend": "names",
    "subscription_required": False,
    "operations": ["GET /docs", "GET /openapi.json"],
}


async def test_only_listed_operations_are_reachable(engine: Engine, harness: Harness) -> None:
    apply(engine, {**BASE_CONFIG, "apis": {**BASE_CONFIG["apis"], "public": PUBLIC}})
    await harness.refresh()
    assert (await harness.client.get("/public/openapi.json")).status_code == 200
    assert (await harness.client.get("/public/docs")).status_code == 200
    blocked = await harness.client.get("/public/generate_name")
    assert blocked.status_code == 404
    assert blocked.json()["type"] == "/-/problems/operation-not-found"
    assert (await harness.client.post("/public/openapi.json")).status_code == 404


async def test_path_templates_match_one_segment(engine: Engine, harness: Harness) -> None:
    api = {"path": "/items", "backend": "echo", "subscription_required": False}
    api["operations"] = ["GET /items/{id}", "DELETE /items/{id}"]
    apply(engine, {**BASE_CONFIG, "apis": {**BASE_CONFIG["apis"], "items": api}})
    await harness.refresh()
    assert (await harness.client.get("/items/items/42")).status_code == 200
    assert (await harness.client.delete("/items/items/42")).status_code == 200
    assert (await harness.client.get("/items/items/42/more")).status_code == 404
    assert (await harness.client.put("/items/items/42")).status_code == 404


async def forwarded_for(gateway_settings: Settings, engine: Engine, peer: str, xff: str) -> str:
    apply(engine, BASE_CONFIG)
    gateway = create_gateway(gateway_settings, engine=engine)
    await gateway.startup()
    try:
        transport = httpx.ASGITransport(app=gateway, client=(peer, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://g.test") as client:
            seen = (await client.get("/open/x", headers={"X-Forwarded-For": xff})).json()
    finally:
        await gateway.shutdown()
    return str(dict(seen["headers"])["x-forwarded-for"])


async def test_untrusted_peer_cannot_spoof_its_address(
    gateway_settings: Settings, engine: Engine
) -> None:
    gateway_settings.trusted_proxies = ["10.0.0.0/8"]
    chain = await forwarded_for(gateway_settings, engine, "198.51.100.9", "1.2.3.4")
    assert chain == "198.51.100.9"  # the spoofed 1.2.3.4 is dropped


async def test_trusted_proxy_chain_is_extended(gateway_settings: Settings, engine: Engine) -> None:
    gateway_settings.trusted_proxies = ["10.0.0.0/8"]
    chain = await forwarded_for(gateway_settings, engine, "10.1.1.1", "1.2.3.4")
    assert chain == "1.2.3.4, 10.1.1.1"
