"""Rate limits and quotas through the gateway over real sockets on both transports: what a
client sees (429s, headers, resets) and the usage rows they leave. The injected clock is read
in the server's thread, so a test crosses window boundaries without sleeping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from ..conftest import REDIS_URL, require_service
from ..gateway.conftest import apply
from ..gateway.test_usage import usage_rows
from .conftest import Clock, Served, calls, config, subscribe

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return require_service(REDIS_URL, "redis")


def forget_quota_counters(url: str) -> None:
    """Delete every quota counter in the test Redis database (the tests run one at a time)."""
    client = redis.Redis.from_url(url)
    try:
        stale = list(client.scan_iter("tw:q:*", count=1000))
        if stale:
            client.delete(*stale)
    finally:
        client.close()


async def test_rate_limit_counts_per_subscription_and_says_when_to_retry(
    engine: Engine, database_url: str, served: Served, store_url: str, clock: Clock
) -> None:
    cfg = config([{"type": "rate-limit", "period": "3/90s", "name": "burst"}])
    apply(engine, cfg)
    keys = subscribe(engine)
    other = subscribe(engine, "other@example.com")
    async with served(engine, database_url, cfg, clock=clock, redis_url=store_url) as (_, client):
        answers = [
            await client.get("/echo/x", headers={"X-API-Key": keys.primary}) for _ in range(4)
        ]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert answers[0].headers["ratelimit-policy"] == '"burst";q=3;w=90'
        assert answers[0].headers["ratelimit"].startswith('"burst";r=2;t=')
        refused = answers[3]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/-/problems/rate-limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 180
        # The secondary key is the same subscription: same counter.
        again = await client.get("/echo/x", headers={"X-API-Key": keys.secondary})
        assert again.status_code == 429
        # Another subscription has its own.
        assert (await client.get("/echo/x", headers={"X-API-Key": other.primary})).is_success
        # 90 s later the window has slid past.
        clock.now += 181
        assert (await client.get("/echo/x", headers={"X-API-Key": keys.primary})).is_success
    mine, theirs = keys.subscription.id, other.subscription.id
    assert calls(engine) == {(mine, "echo", 2): 4, (mine, "echo", 4): 2, (theirs, "echo", 2): 1}


async def test_user_key_counts_all_of_a_developers_subscriptions(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg = config([{"type": "rate-limit", "calls": 2, "period": 60, "key": "user"}])
    apply(engine, cfg)
    first, second = subscribe(engine), subscribe(engine)  # one user, two subscriptions
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        codes = [
            (await client.get("/echo/x", headers={"X-API-Key": k.primary})).status_code
            for k in (first, second, first)
        ]
    assert codes == [200, 200, 429]
    one, two = first.subscription.id, second.subscription.id
    assert calls(engine) == {(one, "echo", 2): 1, (two, "echo", 2): 1, (one, "echo", 4): 1}


async def test_ip_and_header_keys(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg = config(
        [],
        open_policies=[
            {"type": "rate-limit", "calls": 1, "period": 60, "key": "header:X-Tenant"},
        ],
    )
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        a1 = await client.get("/open/x", headers={"X-Tenant": "a"})
        a2 = await client.get("/open/x", headers={"X-Tenant": "a"})
        b1 = await client.get("/open/x", headers={"X-Tenant": "b"})
    assert (a1.status_code, a2.status_code, b1.status_code) == (200, 429, 200)
    assert calls(engine) == {(0, "open", 2): 2, (0, "open", 4): 1}


async def test_several_limits_report_the_one_closest_to_running_out(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg = config(
        [
            {"type": "rate-limit", "calls": 100, "period": 60, "name": "minute"},
            {"type": "quota", "calls": 2, "period": "day", "name": "daily"},
        ]
    )
    apply(engine, cfg)
    keys = subscribe(engine)
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        headers = {"X-API-Key": keys.primary}
        first = await client.get("/echo/x", headers=headers)
        assert first.headers["ratelimit-policy"] == '"minute";q=100;w=60, "daily";q=2;w=86400'
        assert first.headers["ratelimit"].startswith('"daily";r=1;')
        await client.get("/echo/x", headers=headers)
        over = await client.get("/echo/x", headers=headers)
    assert over.status_code == 429
    assert over.json()["type"] == "/-/problems/quota-exceeded"
    assert over.json()["quota"] == "daily"
    sid = keys.subscription.id
    assert calls(engine) == {(sid, "echo", 2): 2, (sid, "echo", 4): 1}


async def test_monthly_quota_resets_on_the_first_and_can_answer_403(
    engine: Engine, database_url: str, served: Served, store_url: str
) -> None:
    cfg = config(
        [{"type": "quota", "calls": 2, "period": "month", "status": 403, "name": "monthly"}]
    )
    apply(engine, cfg)
    keys = subscribe(engine)
    year = 2100 + uuid.uuid4().int % 6000
    clock = Clock(datetime(year, 1, 31, 23, 59, 0, tzinfo=UTC).timestamp())
    if store_url.startswith("redis"):
        forget_quota_counters(store_url)  # an earlier run's counters for this month must not count
    async with served(engine, database_url, cfg, clock=clock, redis_url=store_url) as (_, c):
        headers = {"X-API-Key": keys.primary}
        answers = [await c.get("/echo/x", headers=headers) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 403], [a.text for a in answers]
        assert answers[2].json()["type"] == "/-/problems/quota-exceeded"
        refused = await c.get("/echo/x", headers=headers)
        assert refused.headers["retry-after"] == "60"  # a minute to February
        clock.now += 60
        assert (await c.get("/echo/x", headers=headers)).status_code == 200
    sid = keys.subscription.id
    assert calls(engine) == {(sid, "echo", 2): 3, (sid, "echo", 4): 2}


async def test_byte_quota_stops_calls_once_used_up(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg = config([{"type": "quota", "bytes": 1000, "period": "day"}])
    apply(engine, cfg)
    keys = subscribe(engine)
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        headers = {"X-API-Key": keys.primary}
        big = await client.post("/echo/upload", content=b"x" * 1500, headers=headers)
        assert big.status_code == 200  # it started under the quota, so it completes
        after = await client.get("/echo/x", headers=headers)
    assert after.status_code == 429
    assert "content-bytes" in after.headers["ratelimit-policy"]
    rows = usage_rows(engine)
    assert rows[(keys.subscription.id, "echo", 2)][:2] == (1, 1500)  # (calls, bytes in)
    assert rows[(keys.subscription.id, "echo", 4)][0] == 1


async def test_hidden_headers_and_operation_scope(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg: dict[str, Any] = config([])
    cfg["apis"]["echo"]["operations"] = [
        {
            "method": "GET",
            "path": "/limited",
            "policies": [{"type": "rate-limit", "calls": 1, "period": 60, "hide_headers": True}],
        },
        "GET /free",
    ]
    apply(engine, cfg)
    keys = subscribe(engine)
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        headers = {"X-API-Key": keys.primary}
        first = await client.get("/echo/limited", headers=headers)
        second = await client.get("/echo/limited", headers=headers)
        free = [await client.get("/echo/free", headers=headers) for _ in range(3)]
    assert "ratelimit" not in first.headers
    assert second.status_code == 429 and "retry-after" in second.headers
    assert all(r.status_code == 200 for r in free)
    sid = keys.subscription.id
    assert calls(engine) == {(sid, "echo", 2): 4, (sid, "echo", 4): 1}


async def test_product_scope_quota_applies_to_its_subscribers_only(
    engine: Engine, database_url: str, served: Served, clock: Clock
) -> None:
    cfg = config(
        [],
        products={
            "starter": {
                "apis": ["echo"],
                "policies": [{"type": "quota", "calls": 1, "period": "day"}],
            },
            "gold": {"apis": ["echo"]},
        },
    )
    apply(engine, cfg)
    starter = subscribe(engine)
    gold = subscribe(engine, "gold@example.com", "gold")
    async with served(engine, database_url, cfg, clock=clock) as (_, client):
        s = [
            (await client.get("/echo/x", headers={"X-API-Key": starter.primary})).status_code
            for _ in range(2)
        ]
        g = [
            (await client.get("/echo/x", headers={"X-API-Key": gold.primary})).status_code
            for _ in range(2)
        ]
    assert (s, g) == ([200, 429], [200, 200])
    s_id, g_id = starter.subscription.id, gold.subscription.id
    assert calls(engine) == {(s_id, "echo", 2): 1, (s_id, "echo", 4): 1, (g_id, "echo", 2): 2}
