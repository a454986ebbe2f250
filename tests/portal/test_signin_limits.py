"""Sign-in attempts are counted on Tollway's counter stores: on Redis, across processes."""

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


async def test_attempts_expire_and_a_success_is_given_back() -> None:
    counters, _ = open_stores("memory://")
    clock = Clock()
    limiter = CounterAttemptLimiter(counters, "account", 2, 60, clock)
    for _ in range(2):
        assert await limiter.attempt("a@example.com") is not None
    assert await limiter.attempt("a@example.com") is None  # refused: nothing counted
    assert await limiter.attempt("b@example.com") is not None
    clock.now += 121  # two windows later the attempts have slid out
    first = await limiter.attempt("a@example.com")
    assert first is not None
    await limiter.forgive(first)  # it succeeded
    assert await limiter.attempt("a@example.com") is not None
    assert await limiter.attempt("a@example.com") is not None
    assert await limiter.attempt("a@example.com") is None
    await limiter.reset("a@example.com")
    assert await limiter.attempt("a@example.com") is not None


@pytest.mark.redis
async def test_two_processes_share_the_count_on_redis() -> None:
    url = require_service(REDIS_URL, "redis")
    (first, _), (second, _) = open_stores(url), open_stores(url)
    name = f"account-{uuid.uuid4().hex}"  # fresh keys for this run
    one = CounterAttemptLimiter(first, name, 3, 60)
    two = CounterAttemptLimiter(second, name, 3, 60)
    try:
        assert await one.attempt("x@example.com") is not None
        assert await two.attempt("x@example.com") is not None
        charge = await one.attempt("x@example.com")
        assert charge is not None
        assert await two.attempt("x@example.com") is None
        await two.forgive(charge)
        assert await one.attempt("x@example.com") is not None
    finally:
        await first.aclose()
        await second.aclose()
