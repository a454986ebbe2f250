"""examples/azure-apim-seed.yaml does what seed 000's APIM deployment did.

The backend is a real HTTP server that, like the seed's secured Azure Function, refuses calls
without the right x-functions-key; the gateway injects that key from a secret named value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, in_process, longest_retry_after, make_gateway, subscribe
from tests.proofs.functions_backend import secured_backend
from tests.servers import serve_in_thread
from tollway.config.loader import load_config_file
from tollway.gateway.transport.fastpath import GatewayProtocol

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).parents[2] / "examples" / "azure-apim-seed.yaml"
FUNCTION_KEY = "fk-" + "s3cret" * 4
KEY_HEADER = "Ocp-Apim-Subscription-Key"


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    with serve_in_thread(secured_backend(FUNCTION_KEY)) as base:
        yield base


@pytest.fixture
def seed_key(sqlite_engine: Engine, backend: str) -> str:
    env = {"BACKEND_URL": backend, "FUNCTION_APP_KEY": FUNCTION_KEY}
    apply(sqlite_engine, load_config_file(EXAMPLE, env=env))
    return subscribe(sqlite_engine, "starter")


def test_backend_alone_refuses_calls_without_the_function_key(backend: str) -> None:
    assert httpx.get(f"{backend}/generate_name").status_code == 401
    with_key = httpx.get(f"{backend}/generate_name", headers={"x-functions-key": FUNCTION_KEY})
    assert with_key.status_code == 200


async def test_seed_deployment_in_process(
    sqlite_engine: Engine, sqlite_url: str, seed_key: str
) -> None:
    async with in_process(make_gateway(sqlite_engine, sqlite_url)) as client:
        assert (await client.get("/api/generate_name")).status_code == 401
        replies = [
            await client.get("/api/generate_name", headers={KEY_HEADER: seed_key})
            for _ in range(20)
        ]
        assert {r.status_code for r in replies} == {200}
        assert replies[0].json()["name"]
        assert replies[0].headers["ratelimit-policy"].endswith(";q=20;w=90")
        assert ";r=19;" in replies[0].headers["ratelimit"]
        assert FUNCTION_KEY not in replies[0].text + str(replies[0].headers)
        refused = await client.get("/api/generate_name", headers={KEY_HEADER: seed_key})
        assert refused.status_code == 429
        assert refused.json()["type"] == "/-/problems/rate-limited"
        assert 1 <= int(refused.headers["retry-after"]) <= longest_retry_after(20, 90)
        assert ";r=0;" in refused.headers["ratelimit"]

        preflight = await client.options(
            "/api/generate_name",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"

        await assert_public_docs(client)


async def assert_public_docs(client: httpx.AsyncClient) -> None:
    first = await client.get("/public/docs")
    second = await client.get("/public/docs")
    assert (first.status_code, second.status_code) == (200, 200)
    assert "swagger" in second.text.lower()
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    schema = await client.get("/public/openapi.json")
    assert schema.status_code == 200
    assert "/generate_name" in schema.json()["paths"]
    hidden = await client.get("/public/generate_name")
    assert hidden.status_code == 404
    assert hidden.json()["type"] == "/-/problems/operation-not-found"


def test_seed_deployment_over_the_fast_path_socket(
    sqlite_engine: Engine, sqlite_url: str, seed_key: str
) -> None:
    gateway = make_gateway(sqlite_engine, sqlite_url)
    with (
        serve_in_thread(gateway, lifespan="on", http=GatewayProtocol) as base,
        httpx.Client(base_url=base) as client,
    ):
        assert client.get("/api/generate_name").status_code == 401
        codes = [
            client.get("/api/generate_name", headers={KEY_HEADER: seed_key}).status_code
            for _ in range(20)
        ]
        refused = client.get(f"/api/generate_name?subscription-key={seed_key}")
        first = client.get("/public/docs")
        second = client.get("/public/docs")
        hidden = client.get("/public/generate_name")
    assert codes == [200] * 20
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= longest_retry_after(20, 90)
    assert "ratelimit" in refused.headers
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.headers["x-cache"] == "HIT"
    assert hidden.status_code == 404
