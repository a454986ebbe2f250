"""Operation allow-lists and trusted-proxy handling of X-Forwarded-For (over sockets, both
transports)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tollway.settings import Settings
from tollway.site.compose import create_gateway

from .conftest import BASE_CONFIG, Served, apply, over_sockets, serving

pytestmark = pytest.mark.anyio

PUBLIC = {
    "path": "/public",
    "backend": "names",
    "subscription_required": False,
    "operations": ["GET /docs", "GET /openapi.json"],
}


async def add_api(served: Served, engine: Engine, name: str, api: dict[str, Any]) -> None:
    """BASE_CONFIG (samples over sockets) plus one API, in effect in the served gateway."""
    config = {**BASE_CONFIG, "apis": {**BASE_CONFIG["apis"], name: api}}
    apply(engine, over_sockets(config, served.names_url, served.echo_url))
    await served.refresh()


async def test_only_listed_operations_are_reachable(engine: Engine, served: Served) -> None:
    await add_api(served, engine, "public", PUBLIC)
    assert (await served.client.get("/public/openapi.json")).status_code == 200
    assert (await served.client.get("/public/docs")).status_code == 200
    blocked = await served.client.get("/public/generate_name")
    assert blocked.status_code == 404
    assert blocked.json()["type"] == "/-/problems/operation-not-found"
    assert (await served.client.post("/public/openapi.json")).status_code == 404


async def test_path_templates_match_one_segment(engine: Engine, served: Served) -> None:
    api = {"path": "/items", "backend": "echo", "subscription_required": False}
    api["operations"] = ["GET /items/{id}", "DELETE /items/{id}"]
    await add_api(served, engine, "items", api)
    assert (await served.client.get("/items/items/42")).status_code == 200
    assert (await served.client.delete("/items/items/42")).status_code == 200
    assert (await served.client.get("/items/items/42/more")).status_code == 404
    assert (await served.client.put("/items/items/42")).status_code == 404


async def forwarded_for(
    settings: Settings, engine: Engine, transport: str, urls: tuple[str, str], xff: str
) -> str:
    """The X-Forwarded-For the backend sees for a call from 127.0.0.1 that claims ``xff``."""
    apply(engine, over_sockets(BASE_CONFIG, *urls))
    gateway = create_gateway(settings, engine=engine)
    with serving(gateway, transport) as (base, _):
        async with httpx.AsyncClient(base_url=base) as client:
            seen = (await client.get("/open/x", headers={"X-Forwarded-For": xff})).json()
    return str(dict(seen["headers"])["x-forwarded-for"])


Proxied = Callable[[list[str], str], Awaitable[str]]


@pytest.fixture
def proxied(
    gateway_settings: Settings,
    engine: Engine,
    transport: str,
    names_url: str,
    echo_url: str,
    asgi_api_calls: list[str],
) -> Proxied:
    """``proxied(trusted_proxies, xff)``: the X-Forwarded-For the backend sees (on the fast
    transport, also checks that the call was not handed over to the ASGI transport)."""

    async def run(trusted: list[str], xff: str) -> str:
        gateway_settings.trusted_proxies = trusted
        seen = await forwarded_for(gateway_settings, engine, transport, (names_url, echo_url), xff)
        if transport == "fast":
            assert asgi_api_calls == [], "the fast transport handed the call to the ASGI transport"
        return seen

    return run


async def test_untrusted_peer_cannot_spoof_its_address(proxied: Proxied) -> None:
    chain = await proxied(["10.0.0.0/8"], "1.2.3.4")  # the test's 127.0.0.1 is not a proxy
    assert chain == "127.0.0.1"  # the spoofed 1.2.3.4 is dropped


async def test_trusted_proxy_chain_is_extended(proxied: Proxied) -> None:
    chain = await proxied(["127.0.0.0/8"], "1.2.3.4")
    assert chain == "1.2.3.4, 127.0.0.1"
