"""One contract for every counter store: memory and the real Redis behave the same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from tollway.stores import open_stores
from tollway.stores.base import CounterStore, LimitCheck

from ..conftest import REDIS_URL, require_service
from ..redis_servers import STORES, store_url

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    counters, _ = open_stores(store_url(request))
    yield counters
    await counters.aclose()


def sliding(key: str, limit: int, window: float, now: float, cost: int = 1) -> LimitCheck:
    index = int(now // window)
    return LimitCheck(key, limit, window, index, now - index * window, True, cost)


def fresh() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_exactly_the_limit_passes_then_retry_after_is_given(store: CounterStore) -> None:
    key = fresh()
    results = [await store.check([sliding(key, 5, 60, 1000.0)]) for _ in range(7)]
    assert [ok for ok, _ in results] == [True] * 5 + [False] * 2
    _, states = results[-1]
    assert states[0].remaining == 0
    assert 1 <= states[0].retry_after <= 120


async def test_concurrent_checks_never_overshoot(store: CounterStore) -> None:
    key = fresh()
    results = await asyncio.gather(*(store.check([sliding(key, 50, 60, 30.0)]) for _ in range(200)))
    assert sum(ok for ok, _ in results) == 50


async def test_sliding_window_has_no_boundary_burst(store: CounterStore) -> None:
    """A fixed window would allow 10 at 59 s and 10 more at 61 s; a sliding one does not."""
    key = fresh()
    for _ in range(10):
        assert (await store.check([sliding(key, 10, 60, 59.0)]))[0]
    # Just after the boundary the previous window still weighs ~98%: nothing fits.
    ok, states = await store.check([sliding(key, 10, 60, 61.0)])
    assert not ok
    assert states[0].retry_after >= 1
    # Half-way through the next window half of the previous one has slid out: 5 fit.
    allowed = [(await store.check([sliding(key, 10, 60, 90.0)]))[0] for _ in range(7)]
    assert allowed == [True] * 5 + [False] * 2


async def test_a_refused_call_charges_no_other_limit(store: CounterStore) -> None:
    tight, loose = fresh(), fresh()
    checks = [sliding(tight, 1, 60, 10.0), sliding(loose, 100, 60, 10.0)]
    assert (await store.check(checks))[0]
    for _ in range(5):
        ok, states = await store.check(checks)
        assert not ok
    assert states[1].remaining == 99  # only the first, allowed call was counted


async def test_calendar_windows_reset_at_the_period_start(store: CounterStore) -> None:
    key = fresh()

    def month(index: int, elapsed: float) -> LimitCheck:
        return LimitCheck(key, 2, 2_678_400, index, elapsed, False)

    assert [(await store.check([month(1, 10)]))[0] for _ in range(3)] == [True, True, False]
    ok, states = await store.check([month(1, 2_678_000)])
    assert not ok and states[0].retry_after == 400
    assert (await store.check([month(2, 0)]))[0]  # the next period starts from zero


async def test_byte_counters_grow_after_the_fact(store: CounterStore) -> None:
    key = fresh()
    check = LimitCheck(key, 1000, 86400, 7, 0, False, cost=0)
    assert (await store.check([check]))[0]
    await store.add(key, 7, 1500, 100)
    ok, states = await store.check([check])
    assert not ok and states[0].used == 1500


@pytest.mark.redis
async def test_redis_reloads_the_script_after_a_flush() -> None:
    """A restarted (or SCRIPT FLUSHed) Redis has forgotten the script: EVAL loads it again."""
    import redis.asyncio as aioredis

    url = require_service(REDIS_URL, "redis")
    counters, _ = open_stores(url)
    admin = aioredis.Redis.from_url(url)
    try:
        key = fresh()
        assert (await counters.check([sliding(key, 2, 60, 5.0)]))[0]
        await admin.script_flush()
        ok, states = await counters.check([sliding(key, 2, 60, 5.0)])
        assert ok and states[0].remaining == 0
    finally:
        await admin.aclose()
        await counters.aclose()
