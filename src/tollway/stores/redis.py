"""Counters and cache in Redis, shared by every gateway process and machine.

All of a request's limits are checked and charged by one Lua script (one round trip, atomic),
on one Redis server (``redis://``, ``rediss://`` over TLS), the master Sentinel names, or the
Cluster node that holds the counters' one hash slot (:mod:`tollway.stores.redis_url` lists the
URL forms). When Redis cannot be reached the store raises :class:`StoreUnavailable` at once
and, for the next second, without trying again (so a dead Redis does not add a timeout to
every request); both clients connect again (finding the master or the slot's node again) when
Redis is back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import RedisSSLContext
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from tollway.stores import redis_url
from tollway.stores.base import (
    CachedResponse,
    LimitCheck,
    LimitState,
    StoreUnavailable,
    evaluate,
)
from tollway.stores.resp import RespClient, RespError

logger = logging.getLogger("tollway.stores")

BACKOFF = 1.0  # seconds without trying after a failure

# KEYS: per check, the current then the previous window's counter.
# ARGV: per check, limit, sliding (1/0), weight of the previous window, cost, ttl.
# Returns 1/0 (all allowed), then per check the current and previous counts after charging.
CHECK_SCRIPT = """
local n = #ARGV / 5
local counts = {}
local ok = 1
for i = 1, n do
  local b = (i - 1) * 5
  local limit = tonumber(ARGV[b + 1])
  local weight = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = 0
  if ARGV[b + 2] == '1' then
    previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  counts[2 * i - 1] = current
  counts[2 * i] = previous
  if previous * weight + current + cost > limit then
    ok = 0
  end
end
if ok == 1 then
  for i = 1, n do
    local b = (i - 1) * 5
    local cost = tonumber(ARGV[b + 4])
    if cost > 0 then
      counts[2 * i - 1] = redis.call('INCRBY', KEYS[2 * i - 1], cost)
      redis.call('EXPIRE', KEYS[2 * i - 1], tonumber(ARGV[b + 5]))
    end
  end
end
table.insert(counts, 1, ok)
return counts
"""


CLUSTER_TAG = "{tw}"
"""Prefix of every counter key on Redis Cluster: the hash tag puts them all in one slot, so the
check script may touch any of them in one call (see docs/policies.md, "Redis Cluster")."""

Client = aioredis.Redis | RedisCluster


@dataclass(slots=True)
class Connected:
    """What :func:`connect` opened: redis-py's client, the lean client for the hot path when
    the URL allows it, and the prefix of counter keys."""

    client: Client
    lean: RespClient | None = None
    tag: str = ""
    sentinel: Sentinel | None = None  # (its connections to the sentinels, closed with the rest)


def connect(url: str, max_connections: int = 64) -> Connected:
    """The clients for ``url`` (any form of :mod:`tollway.stores.redis_url`). Nothing is
    contacted yet; a bad URL raises ValueError saying what to fix."""
    target = redis_url.parse(url)
    timeouts: dict[str, Any] = {
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "health_check_interval": 10,
    }
    tls = tls_context(target.ssl) if target.tls else None
    if target.mode == "single":
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=2.0, **timeouts
        )
        lean = None if url.startswith("unix:") else RespClient.from_url(url, tls)
        return Connected(aioredis.Redis(connection_pool=pool), lean)
    # One quick retry: on Sentinel it asks for the master again, on a Cluster for its map.
    common = {**timeouts, **target.auth, **target.ssl, "retry": Retry(NoBackoff(), 1)}
    if target.mode == "sentinel":
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            target.nodes,
            sentinel_kwargs={**timeouts, **target.ssl, **target.sentinel_auth},
            **common,
        )
        master = sentinels.master_for(target.service, db=target.db)
        lean = RespClient(
            db=target.db,
            tls=tls,
            locate=partial(sentinels.discover_master, target.service),
            username=target.auth.get("username"),
            password=target.auth.get("password"),
        )
        return Connected(master, lean, sentinel=sentinels)
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    # (redis-py's cluster pools raise when full instead of waiting, so theirs is roomy; the
    # Sentinel pool is unbounded, like redis-py's default. Only the cache and rare updates use
    # them: the limit checks share the lean client's one connection.)
    cluster = RedisCluster(startup_nodes=nodes, max_connections=16 * max_connections, **common)
    lean = RespClient(
        tls=tls,
        locate=partial(counters_node, cluster),
        username=target.auth.get("username"),
        password=target.auth.get("password"),
    )
    return Connected(cluster, lean, tag=CLUSTER_TAG)


async def counters_node(cluster: RedisCluster) -> tuple[str, int]:
    """The node that holds the counters' slot, from a fresh map of the cluster (asked when the
    lean client connects: at the start and after the slot moved or its node failed)."""
    await cluster.initialize()
    await cluster.nodes_manager.initialize()
    node = cluster.get_node_from_key(CLUSTER_TAG)
    if node is None:
        raise RedisError("no node holds the counters' slot")
    return node.host, int(node.port)


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings of the URL as redis-py's own connections apply them (system CAs plus
    ``ssl_ca_certs``; certificate and host name checked unless ``ssl_cert_reqs=none``)."""
    return RedisSSLContext(
        keyfile=options.get("ssl_keyfile"),
        certfile=options.get("ssl_certfile"),
        cert_reqs=options.get("ssl_cert_reqs", "required"),
        ca_certs=options.get("ssl_ca_certs"),
        check_hostname=options.get("ssl_check_hostname", True),
    ).get()


class _Breaker:
    """Fail fast for a moment after a failure, and log the outage once, not per request."""

    def __init__(self) -> None:
        self.open_until = 0.0
        self.failures = 0
        self.down = False

    def guard(self) -> None:
        if self.open_until and time.monotonic() < self.open_until:
            raise StoreUnavailable("redis unavailable (retrying shortly)")

    def failed(self, exc: Exception) -> StoreUnavailable:
        self.failures += 1
        self.open_until = time.monotonic() + BACKOFF
        # RespError texts are ours or Redis' error replies: no secret in either.
        detail = str(exc) if isinstance(exc, RespError) else type(exc).__name__
        if not self.down:
            self.down = True
            logger.warning("redis unreachable: %s", detail)
        return StoreUnavailable(f"redis unavailable: {detail}")

    def ok(self) -> None:
        if self.down:
            self.down = False
            logger.warning("redis reachable again after %d failed calls", self.failures)
        self.open_until = 0.0


LOOK_AGAIN = ("READONLY", "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies after which the lean client looks for the counters' server again."""

CHECK_SHA = hashlib.sha1(CHECK_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisCounterStore:
    """Limit checks over the lean pipelined client (:mod:`tollway.stores.resp`); the rare
    calls (bytes added after a response, forgetting failures) over redis-py."""

    is_shared = True

    def __init__(self, connected: Connected) -> None:
        self.connected = connected
        self.client = connected.client
        self.resp = connected.lean
        self.tag = connected.tag  # every counter key starts with it
        self.script = self.client.register_script(CHECK_SCRIPT)
        self.breaker = _Breaker()

    def check_now(self, checks: Sequence[LimitCheck]) -> None:
        return None  # always a round trip

    def script_arguments(self, checks: Sequence[LimitCheck]) -> list[Any]:
        """``numkeys, *keys, *args`` for the check script."""
        keys: list[Any] = []
        args: list[Any] = []
        tag = self.tag
        for check in checks:
            keys += (f"{tag}{check.key}:{check.index}", f"{tag}{check.key}:{check.index - 1}")
            weight = max(0.0, 1.0 - check.elapsed / check.window) if check.sliding else 0.0
            args += (check.limit, 1 if check.sliding else 0, weight, check.cost, check.ttl)
        return [len(keys), *keys, *args]

    async def check(self, checks: Sequence[LimitCheck]) -> tuple[bool, list[LimitState]]:
        arguments = self.script_arguments(checks)
        self.breaker.guard()
        try:
            reply = await self._run_script(arguments)
        except (RedisError, RespError, OSError) as exc:
            raise self.breaker.failed(exc) from None
        self.breaker.ok()
        return self.judge(checks, reply)

    async def _run_script(self, arguments: list[Any]) -> Any:
        if self.resp is None:
            numkeys, rest = arguments[0], arguments[1:]
            return await self.script(keys=rest[:numkeys], args=rest[numkeys:])
        try:
            return await self.resp.call("EVALSHA", CHECK_SHA, *arguments)
        except RespError as exc:
            if str(exc).startswith(LOOK_AGAIN):  # a master demoted, a slot moved: find it again
                self.resp.close()
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.resp.call("EVAL", CHECK_SCRIPT, *arguments)  # loads it too

    @staticmethod
    def judge(checks: Sequence[LimitCheck], reply: Any) -> tuple[bool, list[LimitState]]:
        states = [
            evaluate(check, int(reply[1 + 2 * i]), int(reply[2 + 2 * i]))
            for i, check in enumerate(checks)
        ]
        return bool(reply[0]), states

    def add_now(self, key: str, index: int, amount: int, ttl: int) -> bool:
        return False

    async def add(self, key: str, index: int, amount: int, ttl: int) -> None:
        self.breaker.guard()
        slot = f"{self.tag}{key}:{index}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incrby(slot, amount)
                pipe.expire(slot, ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self.breaker.failed(exc) from None
        self.breaker.ok()

    async def clear(self, key: str, indexes: Sequence[int]) -> None:
        self.breaker.guard()
        try:
            await self.client.delete(*(f"{self.tag}{key}:{index}" for index in indexes))
        except (RedisError, OSError) as exc:
            raise self.breaker.failed(exc) from None
        self.breaker.ok()

    async def aclose(self) -> None:
        if self.resp is not None:
            self.resp.close()
        if isinstance(self.client, RedisCluster):
            await self.client.aclose()
        else:
            await self.client.aclose(close_connection_pool=True)
        if self.connected.sentinel is not None:
            for sentinel in self.connected.sentinel.sentinels:
                await sentinel.aclose()


class RedisCacheStore:
    """Cached responses as Redis strings with a TTL (Redis' own maxmemory policy bounds them)."""

    PREFIX = "tollway:cache:"

    def __init__(self, client: Client) -> None:
        self.client = client
        self.breaker = _Breaker()

    async def get(self, key: str) -> CachedResponse | None:
        self.breaker.guard()
        try:
            raw = await self.client.get(self.PREFIX + key)
        except (RedisError, OSError) as exc:
            raise self.breaker.failed(exc) from None
        self.breaker.ok()
        if raw is None:
            return None
        status, headers, body, stored_at = _decode(raw if isinstance(raw, bytes) else raw.encode())
        return CachedResponse(status, headers, body, stored_at)

    async def put(self, key: str, response: CachedResponse, ttl: float) -> None:
        self.breaker.guard()
        raw = _encode(response)
        try:
            await self.client.set(self.PREFIX + key, raw, px=max(1, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            raise self.breaker.failed(exc) from None
        self.breaker.ok()


def _encode(response: CachedResponse) -> bytes:
    """A JSON head line, then the body (no pickle: Redis contents must not be code)."""
    head = {
        "status": response.status,
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in response.headers],
        "stored_at": response.stored_at,
    }
    return json.dumps(head).encode() + b"\n" + response.body


def _decode(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes, float]:
    line, _, body = raw.partition(b"\n")
    head = json.loads(line)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in head["headers"]]
    return int(head["status"]), headers, body, float(head["stored_at"])
