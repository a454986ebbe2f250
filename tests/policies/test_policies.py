"""IP filter, CORS, set-header, cache, size limit and timeout through the gateway, over real
sockets on both transports, and the usage rows they leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Engine

from tollway.settings import Settings

from ..gateway.conftest import apply
from ..gateway.test_usage import usage_rows
from ..servers import free_port
from .conftest import Served, calls, config, subscribe

pytestmark = pytest.mark.anyio


async def test_ip_filter_denies_ranges_and_ignores_spoofed_forwarded_for(
    engine: Engine, database_url: str, served: Served
) -> None:
    cfg = config([], open_policies=[{"type": "ip-filter", "deny": ["127.0.0.0/8"]}])
    async with served(engine, database_url, cfg) as (_, client):
        denied = await client.get("/open/x")
        spoofed = await client.get("/open/x", headers={"X-Forwarded-For": "198.51.100.1"})
    assert denied.status_code == 403
    assert denied.json()["type"] == "/-/problems/ip-forbidden"
    assert spoofed.status_code == 403  # the peer is not a trusted proxy: the header is ignored
    assert calls(engine) == {(0, "open", 4): 2}  # refusals are counted too


async def test_ip_filter_allow_list_believes_trusted_proxies_only(
    engine: Engine, database_url: str, served: Served
) -> None:
    cfg = config([], open_policies=[{"type": "ip-filter", "allow": ["198.51.100.0/24", "::1"]}])
    async with served(engine, database_url, cfg, trusted_proxies=["127.0.0.1"]) as (_, client):
        through_proxy = await client.get("/open/x", headers={"X-Forwarded-For": "198.51.100.9"})
        other = await client.get("/open/x", headers={"X-Forwarded-For": "192.0.2.1"})
        proxy_itself = await client.get("/open/x")
    assert through_proxy.status_code == 200
    assert (other.status_code, proxy_itself.status_code) == (403, 403)
    assert calls(engine) == {(0, "open", 2): 1, (0, "open", 4): 2}


CORS = {
    "type": "cors",
    "origins": ["https://app.example.com", "https://*.example.org"],
    "methods": ["GET", "POST"],
    "expose_headers": ["RateLimit"],
}


async def test_cors_preflight_is_answered_without_a_key(
    engine: Engine, database_url: str, served: Served
) -> None:
    async with served(engine, database_url, config([CORS])) as (_, client):
        preflight = await client.options(
            "/echo/x",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, content-type",
            },
        )
        pattern = await client.options(
            "/echo/x",
            headers={"Origin": "https://eu.example.org", "Access-Control-Request-Method": "GET"},
        )
        evil = await client.options(
            "/echo/x",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        method = await client.options(
            "/echo/x",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"},
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert preflight.headers["access-control-allow-headers"] == "x-api-key, content-type"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["vary"] == "Origin"
    assert pattern.status_code == 204
    assert (evil.status_code, method.status_code) == (403, 403)
    assert "access-control-allow-origin" not in evil.headers
    assert calls(engine) == {(0, "echo", 2): 2, (0, "echo", 4): 2}  # preflights carry no key


async def test_cors_headers_reach_answers_and_refusals(
    engine: Engine, database_url: str, served: Served
) -> None:
    apply(engine, config([CORS]))
    keys = subscribe(engine)
    async with served(engine, database_url, config([CORS])) as (_, client):
        origin = {"Origin": "https://app.example.com"}
        ok = await client.get("/echo/x", headers={**origin, "X-API-Key": keys.primary})
        refused = await client.get("/echo/x", headers=origin)
        foreign = await client.get("/echo/x", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-expose-headers"] == "RateLimit"
    assert refused.status_code == 401  # browser code can read why
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in foreign.headers
    assert calls(engine) == {(keys.subscription.id, "echo", 2): 1, (0, "echo", 4): 2}


async def test_a_backend_failure_is_a_problem_browser_code_can_read(
    engine: Engine, database_url: str, served: Served
) -> None:
    """The gateway's own answers carry the CORS headers whatever made them: a 502 too."""
    down = {"url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 2}
    api = {"path": "/down", "backend": "down", "subscription_required": False, "policies": [CORS]}
    cfg = config([], backends={"down": down}, apis={"down": api})
    async with served(engine, database_url, cfg) as (_, client):
        failed = await client.get("/down/x", headers={"Origin": "https://app.example.com"})
    assert failed.status_code == 502
    assert failed.json()["type"] == "/-/problems/backend-unreachable"
    assert failed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert calls(engine) == {(0, "down", 5): 1}


async def test_set_header_injects_a_secret_the_client_never_sees(
    engine: Engine, database_url: str, served: Served
) -> None:
    cfg = config(
        [],
        named_values={"function-app-key": {"value": "fak-very-secret", "secret": True}},
        open_policies=[
            {
                "type": "set-header",
                "request": {"x-functions-key": "{{function-app-key}}"},
                "request_remove": ["x-internal"],
                "response": {"x-served-by": "tollway"},
                "response_remove": ["content-type"],
            }
        ],
    )
    async with served(engine, database_url, cfg) as (_, client):
        response = await client.get(
            "/open/x", headers={"X-Functions-Key": "client-guess", "X-Internal": "1"}
        )
    seen = dict(response.json()["headers"])
    assert seen["x-functions-key"] == "fak-very-secret"  # replaced, not appended
    assert "x-internal" not in seen
    assert response.headers["x-served-by"] == "tollway"
    assert "content-type" not in response.headers
    assert "fak-very-secret" not in str(response.headers)
    assert calls(engine) == {(0, "open", 2): 1}


async def test_cache_serves_repeats_and_respects_the_backend(
    engine: Engine, database_url: str, served: Served
) -> None:
    cache: dict[str, Any] = {"type": "cache", "ttl": 60, "vary_by_query": ["q"]}
    async with served(engine, database_url, config([], open_policies=[cache])) as (_, client):
        first = await client.get("/open/doc?q=1&noise=a")
        second = await client.get("/open/doc?noise=b&q=1")
        other = await client.get("/open/doc?q=2")
        no_store = [await client.get("/open/with-headers?Cache-Control=no-store") for _ in range(2)]
        cookie = [await client.get("/open/with-headers?Set-Cookie=a%3D1") for _ in range(2)]
        client.cookies.clear()  # (a request carrying a cookie is never answered from the cache)
        post = [await client.post("/open/doc?q=1") for _ in range(2)]
        head = await client.head("/open/doc?q=1")
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.json()["served"] == first.json()["served"]  # the backend was not called
    assert "age" in second.headers
    assert other.headers["x-cache"] == "MISS"
    assert [r.headers["x-cache"] for r in no_store] == ["MISS", "MISS"]
    # not stored; the second call carries the cookie, so the cache stays out of it entirely
    assert [r.headers.get("x-cache") for r in cookie] == ["MISS", None]
    assert all("x-cache" not in r.headers for r in post)
    assert head.headers["x-cache"] == "HIT"  # answered from the GET entry, without a body
    assert head.headers["content-length"] == first.headers["content-length"]
    assert calls(engine) == {(0, "open", 2): 10}  # answers from the cache are calls too


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A body sent without Content-Length (chunked)."""
    for part in parts:
        yield part


async def test_request_size_limit(engine: Engine, database_url: str, served: Served) -> None:
    cfg = config([], open_policies=[{"type": "request-size-limit", "max_bytes": 100}])
    async with served(engine, database_url, cfg) as (_, client):
        small = await client.post("/open/upload", content=b"x" * 100)
        large = await client.post("/open/upload", content=b"x" * 101)
        streamed = await client.post("/open/upload", content=chunks(b"x" * 60, b"x" * 60))
    assert small.status_code == 200
    assert large.status_code == 413
    assert large.json()["type"] == "/-/problems/request-too-large"
    assert streamed.status_code == 413
    rows = usage_rows(engine)
    assert rows[(0, "open", 2)][:2] == (1, 100)  # (calls, bytes in)
    assert rows[(0, "open", 4)][0] == 2


async def test_timeout_policy_cuts_a_slow_backend_short(
    engine: Engine, database_url: str, served: Served
) -> None:
    cfg = config([], open_policies=[{"type": "timeout", "seconds": 0.2}])
    async with served(engine, database_url, cfg) as (_, client):
        # 1 s, not more: the shared echo server lets its handlers finish when the session ends
        slow = await client.get("/open/slow?seconds=1")
        fine = await client.get("/open/fine")
    assert slow.status_code == 504 and fine.status_code == 200
    assert calls(engine) == {(0, "open", 2): 1, (0, "open", 5): 1}


def test_settings_default_to_memory_store() -> None:
    assert Settings().redis_url == "memory://"  # type: ignore[call-arg]


def test_every_built_in_kind_acts_through_a_declared_hook_or_a_chain_setting() -> None:
    """A policy kind takes part by naming a hook of ``phases.HOOKS`` (or by being one of the
    chain's settings): a misspelt hook would otherwise be silently skipped."""
    from tollway.policies.chain import SETTINGS
    from tollway.policies.kinds import BUILT_IN
    from tollway.policies.phases import HOOKS
    from tollway.policies.registry import POLICY_BUILDERS

    assert len(BUILT_IN) == len(POLICY_BUILDERS)
    for kind, cls in POLICY_BUILDERS.items():
        assert isinstance(cls, type)
        hooks = [name for name in HOOKS if callable(getattr(cls, name, None))]
        assert hooks or getattr(cls, "slot", None) in SETTINGS, kind
