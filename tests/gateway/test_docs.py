"""Public docs: catalogue, Swagger UI served locally, OpenAPI rewritten for the gateway."""

# In-process, not on both transports: the docs are Tollway's own pages, always on the ASGI path.

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine

from .conftest import BASE_CONFIG, Harness, apply

pytestmark = pytest.mark.anyio


async def test_openapi_is_rewritten_to_point_at_the_gateway(harness: Harness) -> None:
    response = await harness.client.get("/docs/names/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["servers"] == [{"url": "/names", "description": "Tollway gateway"}]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["subscriptionKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Subscription key from the Tollway developer portal.",
    }
    assert schemes["subscriptionKeyQuery"]["in"] == "query"
    assert schemes["subscriptionKeyQuery"]["name"] == "subscription-key"
    assert {"subscriptionKeyHeader": []} in doc["security"]
    assert "/generate_name" in doc["paths"]


async def test_try_it_out_request_built_from_the_docs_works(harness: Harness) -> None:
    """Do what Swagger UI does: server URL + path + the declared key header."""
    keys = harness.subscribe()
    await harness.refresh()
    doc = (await harness.client.get("/docs/names/openapi.json")).json()
    url = doc["servers"][0]["url"] + "/generate_name"
    header = doc["components"]["securitySchemes"]["subscriptionKeyHeader"]["name"]
    response = await harness.client.get(
        url, params={"starts_with": "m"}, headers={header: keys.primary}
    )
    assert response.status_code == 200
    assert response.json()["name"].startswith("M")


async def test_docs_page_uses_only_local_assets(harness: Harness) -> None:
    page = await harness.client.get("/docs/names")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources, "the page loads Swagger UI from somewhere"
    assert all(src.startswith("/") for src in sources), sources
    for src in sources:
        asset = await harness.client.get(src)
        assert asset.status_code == 200, src
    assert 'data-openapi-url="/docs/names/openapi.json"' in page.text


async def test_catalogue_lists_every_published_api(harness: Harness) -> None:
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    for name in ("names", "echo", "open", "other"):
        assert f'href="/docs/{name}"' in page.text


async def test_backend_without_openapi_document_is_a_clear_502(harness: Harness) -> None:
    # the echo backend answers /openapi.json with a description of the request, not a spec
    response = await harness.client.get("/docs/open/openapi.json")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_api_docs_is_404_problem(harness: Harness) -> None:
    response = await harness.client.get("/docs/nope")
    assert response.status_code == 404
    assert response.json()["type"] == "/-/problems/not-found"


async def test_docs_only_show_allowed_operations(engine: Engine, harness: Harness) -> None:
    config = {**BASE_CONFIG, "apis": {**BASE_CONFIG["apis"]}}
    config["apis"]["public"] = {
        "path": "/public",
        "backend": "names",
        "subscription_required": False,
        "operations": ["GET /docs", "GET /openapi.json"],
    }
    apply(engine, config)
    await harness.refresh()
    doc = (await harness.client.get("/docs/public/openapi.json")).json()
    assert "/generate_name" not in doc["paths"]
    assert "security" not in doc
