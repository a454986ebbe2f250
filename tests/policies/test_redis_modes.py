"""Limits and the cache on Redis as production runs it: over TLS, behind Sentinel (through a real
fail-over) and on a 3-node Cluster, through the gateway over real sockets on both transports.

Each Redis here is the test's own ``redis-server`` processes on free loopback ports
(``tests/redis_servers.py``), killed at the end. What a client sees is asserted (exact counts of
200/429/403, cache hits), and so is the promise of one Redis round trip per request: the servers'
own command statistics before and after. The injected clock gives every test its own windows,
so the module-wide servers carry nothing from one test to the next. (SQLite only: what is under
test is Redis, the database kinds are the rest of the suite's business.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis.crc import key_slot as keyslot
from sqlalchemy import Engine

from tollway.stores.redis import CLUSTER_TAG

from ..gateway.conftest import apply
from ..redis_servers import (
    RedisServer,
    commands,
    move_slot,
    sentinel_group,
    slot_owner,
)
from .conftest import Clock, Served, calls, config, subscribe

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LIMITS = [
    {"type": "rate-limit", "period": "3/60s", "name": "burst"},
    {"type": "quota", "calls": 5, "period": "day", "status": 403, "name": "daily"},
]
CACHE = [{"type": "cache", "ttl": 60}]
SCRIPT = ("evalsha", "eval")  # each one round trip (the bench counts the same)


PROBE = {"cmdstat_info"}  # what reading the statistics costs (over a connection made before)
INSIDE = {"cmdstat_get", "cmdstat_incrby", "cmdstat_expire"}  # what the check script runs


def round_trips(servers: list[RedisServer]) -> int:
    """Commands clients sent these servers, whatever they were: every command Redis counts,
    less those the check script runs inside Redis (no round trip) and the test's own probes."""
    total = 0
    for server in servers:
        stats = server.info("commandstats")
        total += sum(int(v["calls"]) for k, v in stats.items() if k not in PROBE | INSIDE)
    return total


async def get(client: httpx.AsyncClient, key: str, path: str = "/echo/x") -> int:
    return (await client.get(path, headers={"X-API-Key": key})).status_code


async def limits_and_cache(
    client: httpx.AsyncClient, key: str, clock: Clock, servers: list[RedisServer]
) -> None:
    """The rate limit (3/60 s) and the daily quota (5, answering 403) count exactly, the cache
    hits, and each limited request is exactly one command in Redis (after the first, which
    may load the script)."""
    assert await get(client, key) == 200
    before, scripts = round_trips(servers), commands(servers, *SCRIPT)
    assert [await get(client, key) for _ in range(3)] == [200, 200, 429]
    clock.now += 121  # the sliding minute has passed; the day has not
    assert [await get(client, key) for _ in range(3)] == [200, 200, 403]
    # One round trip per request, refused or not: the check script, and nothing else.
    assert commands(servers, *SCRIPT) - scripts == 6
    assert round_trips(servers) - before == 6
    cached = [await client.get("/open/cached") for _ in range(2)]
    assert [r.headers["x-cache"] for r in cached] == ["MISS", "HIT"]


def limits_config() -> dict[str, Any]:
    return config(LIMITS, open_policies=CACHE)


# TLS --------------------------------------------------------------------------------------------
def tls_url(server: RedisServer, **options: str) -> str:
    return f"{server.url}?" + "&".join(f"{k}={v}" for k, v in options.items())


async def test_limits_and_cache_over_tls(
    sqlite_engine: Engine, sqlite_url: str, served: Served, tls_redis: RedisServer, clock: Clock
) -> None:
    files = tls_redis.tls
    assert files is not None
    url = tls_url(
        tls_redis,
        ssl_ca_certs=str(files.ca),
        ssl_certfile=str(files.client_cert),
        ssl_keyfile=str(files.client_key),
    )
    cfg = limits_config()
    apply(sqlite_engine, cfg)
    key = subscribe(sqlite_engine).primary
    settings = {"redis_url": url, "limits_fail_closed": True}  # (an unusable Redis shows: 503)
    async with served(sqlite_engine, sqlite_url, cfg, clock=clock, **settings) as (_, client):
        await limits_and_cache(client, key, clock, [tls_redis])


async def test_tls_redis_is_refused_without_the_ca_or_the_client_certificate(
    sqlite_engine: Engine, sqlite_url: str, served: Served, tls_redis: RedisServer
) -> None:
    files = tls_redis.tls
    assert files is not None
    untrusted = tls_url(  # the system store does not know the test CA
        tls_redis, ssl_certfile=str(files.client_cert), ssl_keyfile=str(files.client_key)
    )
    anonymous = tls_url(tls_redis, ssl_ca_certs=str(files.ca))  # no client certificate
    cfg = config(LIMITS)
    apply(sqlite_engine, cfg)
    keys = subscribe(sqlite_engine)
    key = keys.primary
    for url in (untrusted, anonymous):
        settings = {"redis_url": url, "limits_fail_closed": True}
        async with served(sqlite_engine, sqlite_url, cfg, **settings) as (_, client):
            refused = await client.get("/echo/x", headers={"X-API-Key": key})
        assert refused.status_code == 503
        assert refused.json()["type"] == "/-/problems/limits-unavailable"
    assert calls(sqlite_engine) == {(keys.subscription.id, "echo", 5): 2}


# Cluster ----------------------------------------------------------------------------------------
async def test_limits_and_cache_on_a_cluster(
    sqlite_engine: Engine,
    sqlite_url: str,
    served: Served,
    cluster_redis: list[RedisServer],
    clock: Clock,
) -> None:
    url = "redis+cluster://" + ",".join(node.address for node in cluster_redis[:2])  # any nodes
    cfg = limits_config()
    apply(sqlite_engine, cfg)
    key = subscribe(sqlite_engine).primary
    settings = {"redis_url": url, "limits_fail_closed": True}
    async with served(sqlite_engine, sqlite_url, cfg, clock=clock, **settings) as (_, client):
        await limits_and_cache(client, key, clock, cluster_redis)
    # Every counter is in the one hash slot of "{tw}": one node holds them all.
    holders = []
    for node in cluster_redis:
        with node.client() as direct:
            holders.append(sorted(k.decode() for k in direct.scan_iter("{tw}*")))
    assert sorted(len(found) > 0 for found in holders) == [False, False, True]
    assert any(k.startswith("{tw}tw:rl:") for found in holders for k in found)
    assert any(k.startswith("{tw}tw:q:") for found in holders for k in found)


async def test_limits_follow_the_counters_slot_to_another_node(
    sqlite_engine: Engine,
    sqlite_url: str,
    served: Served,
    cluster_redis: list[RedisServer],
    clock: Clock,
) -> None:
    """Resharding moves the counters' slot (and its counts) to another node: the gateway finds it
    there (Redis answers MOVED) and the limit goes on counting from where it was."""
    url = "redis+cluster://" + cluster_redis[0].address
    cfg = config([{"type": "rate-limit", "period": "5/60s", "name": "burst"}])
    apply(sqlite_engine, cfg)
    keys = subscribe(sqlite_engine)
    slot = keyslot(CLUSTER_TAG.encode())
    settings = {"redis_url": url, "limits_fail_closed": True}
    async with served(sqlite_engine, sqlite_url, cfg, clock=clock, **settings) as (_, client):
        assert [await get(client, keys.primary) for _ in range(3)] == [200, 200, 200]
        before = slot_owner(cluster_redis, slot)
        target = next(node for node in cluster_redis if node is not before)
        await anyio.to_thread.run_sync(move_slot, cluster_redis, slot, target)
        seen = await until_not_503(client, keys.primary)
        seen += [await get(client, keys.primary) for _ in range(2)]
    assert slot_owner(cluster_redis, slot) is target
    assert set(seen[:-3]) <= {503}  # (the first call after the move meets MOVED)
    assert seen[-3:] == [200, 200, 429]


async def until_not_503(client: httpx.AsyncClient, key: str) -> list[int]:
    """Statuses of calls made until one is not 503 (the store waits a second after a failure
    before trying Redis again), bounded."""
    seen = [await get(client, key)]
    while seen[-1] == 503 and len(seen) < 400:
        await anyio.sleep(0.05)
        seen.append(await get(client, key))
    return seen


# Sentinel ---------------------------------------------------------------------------------------
async def test_limits_keep_counting_through_a_sentinel_fail_over(
    sqlite_engine: Engine, sqlite_url: str, served: Served, tmp_path: Path, clock: Clock
) -> None:
    cfg = config([{"type": "rate-limit", "period": "5/60s", "name": "burst"}])
    apply(sqlite_engine, cfg)
    keys = subscribe(sqlite_engine)
    key = keys.primary
    with sentinel_group(tmp_path) as group:
        settings = {"redis_url": group.url, "limits_fail_closed": True}
        async with served(sqlite_engine, sqlite_url, cfg, clock=clock, **settings) as (_, client):
            assert [await get(client, key) for _ in range(3)] == [200, 200, 200]
            new_master = await anyio.to_thread.run_sync(group.fail_over)
            # Until the gateway has found the new master: 503 (fail-closed), never another 5xx.
            seen = await until_not_503(client, key)
            before = commands([new_master], *SCRIPT)
            seen += [await get(client, key) for _ in range(2)]
            assert commands([new_master], *SCRIPT) - before == 2  # one round trip each
    assert set(seen[:-3]) <= {503}
    assert seen[-3:] == [200, 200, 429]  # 3 before + 2 after = the limit of 5, then refused
    sid = keys.subscription.id
    outage = len(seen) - 3  # (often none: redis-py's one retry asks the sentinel again)
    expected = {(sid, "echo", 2): 5, (sid, "echo", 4): 1}
    assert calls(sqlite_engine) == expected | ({(sid, "echo", 5): outage} if outage else {})
