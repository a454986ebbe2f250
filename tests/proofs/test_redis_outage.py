"""A Redis that dies mid-run: the gateway keeps serving (no 5xx) and limits return with Redis.

The Redis here is the test's own ``redis-server`` on a spare port, so killing it harms nobody.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, in_process, make_gateway, subscribe
from tests.redis_servers import RedisServer, redis_server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CONFIG = {
    "backends": {"echo": {"app": "tollway.samples.echo:app"}},
    "apis": {
        "echo": {
            "path": "/echo",
            "backend": "echo",
            "policies": [{"type": "rate-limit", "period": "5/60s"}],
        }
    },
    "products": {"starter": {"apis": ["echo"]}},
}


@pytest.fixture
def spare_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


async def statuses(client: httpx.AsyncClient, key: str, count: int) -> list[int]:
    return [
        (await client.get("/echo/x", headers={"X-API-Key": key})).status_code for _ in range(count)
    ]


async def test_redis_outage_fails_open_and_recovers(
    sqlite_engine: Engine,
    sqlite_url: str,
    spare_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apply(sqlite_engine, CONFIG)
    key = subscribe(sqlite_engine, "starter")
    gateway = make_gateway(sqlite_engine, sqlite_url, redis_url=spare_redis.url)
    async with in_process(gateway) as client:
        assert await statuses(client, key, 6) == [200] * 5 + [429]
        spare_redis.kill()
        assert await statuses(client, key, 10) == [200] * 10  # limits off, service on
        outage_metrics = await metrics(client)
        spare_redis.start()  # empty: the counters start again
        seen = await statuses_until_status(client, key, 429)
    assert set(seen) <= {200, 429}
    assert seen[-1] == 429
    assert seen.count(200) >= 5
    # What an operator sees at /-/metrics during the outage (docs/observability.md).
    assert outage_metrics['tollway_limits_store_decisions_total{decision="fail-open"}'] == 10
    assert outage_metrics["tollway_limits_store_errors_total"] >= 10
    assert outage_metrics['tollway_limits_store_decisions_total{decision="fail-closed"}'] == 0
    outage = [r.getMessage() for r in caplog.records if "redis" in r.getMessage()]
    assert outage[0].startswith("redis unreachable: ")  # once, not once per call
    assert outage[1].startswith("redis reachable again after ")
    assert len(outage) == 2


async def statuses_until_status(client: httpx.AsyncClient, key: str, wanted: int) -> list[int]:
    """Call until a reply has status ``wanted`` (bounded), returning every status seen."""
    seen: list[int] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen += await statuses(client, key, 1)
        if seen[-1] == wanted:
            break
        await anyio.sleep(0.02)  # the store waits about a second before retrying Redis
    return seen


async def test_redis_outage_fails_closed_when_configured(
    sqlite_engine: Engine, sqlite_url: str, spare_redis: RedisServer
) -> None:
    apply(sqlite_engine, CONFIG)
    key = subscribe(sqlite_engine, "starter")
    gateway = make_gateway(
        sqlite_engine, sqlite_url, redis_url=spare_redis.url, limits_fail_closed=True
    )
    async with in_process(gateway) as client:
        assert await statuses(client, key, 1) == [200]
        spare_redis.kill()
        refused = await client.get("/echo/x", headers={"X-API-Key": key})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/-/problems/limits-unavailable"
        assert refused.headers["retry-after"] == "1"
        seen_metrics = await metrics(client)
        spare_redis.start()
        seen = await statuses_until_status(client, key, 200)
    assert set(seen) <= {200, 503}
    assert seen[-1] == 200
    assert seen_metrics['tollway_limits_store_decisions_total{decision="fail-closed"}'] == 1
    assert seen_metrics['tollway_policy_rejections_total{api="echo",policy="limits-store"}'] == 1


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """``/-/metrics`` as {series: value} (series as the exposition writes them)."""
    text = (await client.get("/-/metrics")).text
    return {
        series: float(number)
        for series, _, number in (line.rpartition(" ") for line in text.splitlines())
        if series and not series.startswith("#")
    }
