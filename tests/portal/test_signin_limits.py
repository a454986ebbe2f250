"""Failed sign-ins are counted on Tollway's counter stores: on Redis, across processes."""

from __future__ import annotations

import uuid

import pytest

from tollway.portal.limits import CounterAttemptLimiter
from tollway.stores import open_stores

from ..conftest import REDIS_URL, require_service

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_failures_expire_and_a_success_forgets_them() -> None:
    counters, _ = open_stores("memory://")
    clock = Clock()
    limiter = CounterAttemptLimiter(counters, "account", 2, 60, clock)
    for _ in range(2):
        assert await limiter.allowed("a@example.com")
        await limiter.failed("a@example.com")
    assert not await limiter.allowed("a@example.com")
    assert await limiter.allowed("b@example.com")
    clock.now += 121  # two windows later the failures have slid out
    assert await limiter.allowed("a@example.com")
    await limiter.failed("a@example.com")
    await limiter.reset("a@example.com")
    await limiter.failed("a@example.com")
    assert await limiter.allowed("a@example.com")  # the earlier failure was forgotten


@pytest.mark.redis
async def test_two_processes_share_the_count_on_redis() -> None:
    url = require_service(REDIS_URL, "redis")
    (first, _), (second, _) = open_stores(url), open_stores(url)
    name = f"account-{uuid.uuid4().hex}"  # fresh keys for this run
    one = CounterAttemptLimiter(first, name, 3, 60)
    two = CounterAttemptLimiter(second, name, 3, 60)
    try:
        await one.failed("x@example.com")
        await two.failed("x@example.com")
        assert await one.allowed("x@example.com")
        await one.failed("x@example.com")
        assert not await two.allowed("x@example.com")
    finally:
        await first.aclose()
        await second.aclose()
