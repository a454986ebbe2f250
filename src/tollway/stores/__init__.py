"""Shared state for policies: rate-limit/quota counters and the response cache.

``memory://`` keeps them in this process; ``redis://`` shares them between processes and
machines. Both implement the protocols in :mod:`tollway.stores.base`, and one contract test
suite runs against both (``tests/stores``).
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
    "open_stores",
]


def open_stores(
    url: str, *, cache_bytes: int = 64 * 1024 * 1024
) -> tuple[CounterStore, CacheStore]:
    """The counter and cache stores for ``url`` (``memory://`` or ``redis://host:port/db``)."""
    if url.startswith("memory:"):
        return MemoryCounterStore(), MemoryCacheStore(cache_bytes)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from tollway.stores.redis import RedisCacheStore, RedisCounterStore, connect
        from tollway.stores.resp import RespClient

        client = connect(url)
        lean = RespClient(url) if url.startswith("redis://") else None  # (TLS, sockets: redis-py)
        return RedisCounterStore(client, lean), RedisCacheStore(client)
    raise ValueError(f"unsupported store URL {url!r}: use memory:// or redis://host:port/db")
