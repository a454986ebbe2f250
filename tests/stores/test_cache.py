"""One contract for both response caches (memory and the real Redis)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from tollway.stores import open_stores
from tollway.stores.base import CachedResponse, CacheStore
from tollway.stores.memory import MemoryCacheStore

from ..redis_servers import STORES, store_url

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORES)
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[CacheStore]:
    counters, found = open_stores(store_url(request))
    yield found
    await counters.aclose()


def response(body: bytes = b'{"ok": true}') -> CachedResponse:
    headers = [(b"content-type", b"application/json"), (b"x-odd", b"\xe9t\xe9")]
    return CachedResponse(200, headers, body, time.time())


async def test_a_stored_response_comes_back_whole(cache: CacheStore) -> None:
    key = uuid.uuid4().hex
    assert await cache.get(key) is None
    stored = response(b"\x00binary\xffbody")
    await cache.put(key, stored, ttl=60)
    assert await cache.get(key) == stored


async def test_entries_expire(cache: CacheStore) -> None:
    key = uuid.uuid4().hex
    await cache.put(key, response(), ttl=0.05)
    deadline = time.monotonic() + 5
    while await cache.get(key) is not None:
        assert time.monotonic() < deadline, "entry never expired"
        await anyio.sleep(0.02)


async def test_memory_cache_stays_within_its_size_and_evicts_least_recently_used() -> None:
    cache = MemoryCacheStore(max_bytes=3000)
    for name in "abc":
        await cache.put(name, response(b"x" * 900), ttl=60)
    assert await cache.get("a") is not None  # "a" is now the most recently used
    await cache.put("d", response(b"x" * 900), ttl=60)
    assert await cache.get("b") is None
    assert all([await cache.get(n) for n in "acd"])
    await cache.put("huge", response(b"x" * 5000), ttl=60)  # larger than the whole cache
    assert await cache.get("huge") is None and await cache.get("d") is not None
