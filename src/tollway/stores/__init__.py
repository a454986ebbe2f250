"""Shared state for policies: rate-limit/quota counters and the response cache.

``memory://`` keeps them in this process; Redis (one server, Sentinel or Cluster, TLS or not)
shares them between processes and machines. Both implement the protocols in
:mod:`tollway.stores.base`, and one contract test suite runs against both (``tests/stores``).
"""

from __future__ import annotations

from tollway.stores.base import CacheStore, CounterStore, StoreUnavailable
from tollway.stores.memory import MemoryCacheStore, MemoryCounterStore

__all__ = [
    "CacheStore",
    "CounterStore",
    "MemoryCacheStore",
    "MemoryCounterStore",
    "StoreUnavailable",
    "check_store_url",
    "open_stores",
]


def check_store_url(url: str) -> None:
    """Raise BadRedisURL (a UserError) if ``url`` is not a usable store URL: ``tollway serve``
    says so in one line before any worker starts."""
    if not url.startswith("memory:"):
        from tollway.stores.redis_url import parse

        parse(url)


def open_stores(
    url: str, *, cache_bytes: int = 64 * 1024 * 1024
) -> tuple[CounterStore, CacheStore]:
    """The counter and cache stores for ``url``: ``memory://`` or one of the Redis forms of
    :mod:`tollway.stores.redis_url` (BadRedisURL, a ValueError naming what to fix, else)."""
    if url.startswith("memory:"):
        return MemoryCounterStore(), MemoryCacheStore(cache_bytes)
    from tollway.stores.redis import RedisCacheStore, RedisCounterStore, connect

    connected = connect(url)
    return RedisCounterStore(connected), RedisCacheStore(connected.client)
