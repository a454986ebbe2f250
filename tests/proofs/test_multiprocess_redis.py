"""Two ``tollway serve`` processes sharing the real Redis enforce one limit together."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import REDIS_URL, require_service
from tests.proofs.conftest import apply, longest_retry_after, subscribe
from tests.servers import serve_in_thread, tollway_env, tollway_serve
from tollway.samples.echo import app as echo_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def upstream() -> Iterator[str]:
    with serve_in_thread(echo_app) as base:
        yield base


@contextmanager
def two_gateways(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Two ``tollway serve`` processes, started side by side (each start takes seconds)."""
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=2) as starter:
        # enter_context registers each server's stop as soon as that server is up
        started = [starter.submit(stack.enter_context, tollway_serve(env)) for _ in range(2)]
        yield started[0].result(), started[1].result()


def limited_config(upstream: str) -> dict[str, object]:
    # The nonce makes the policy's uid, hence its Redis keys, new: the shared Redis is never
    # flushed (other tests use it) and no earlier run's counters can leak in.
    name = f"proof-{uuid.uuid4().hex[:12]}"
    return {
        "backends": {"echo": {"url": upstream}},
        "apis": {
            "echo": {
                "path": "/echo",
                "backend": "echo",
                "policies": [{"type": "rate-limit", "calls": 50, "period": 60, "name": name}],
            }
        },
        "products": {"starter": {"apis": ["echo"]}},
    }


def test_two_gateways_share_one_limit(
    sqlite_engine: Engine, sqlite_url: str, upstream: str, tmp_path: Path
) -> None:
    redis_url = require_service(REDIS_URL, "redis")
    apply(sqlite_engine, limited_config(upstream))
    key = subscribe(sqlite_engine, "starter")
    env = tollway_env(sqlite_url, TOLLWAY_REDIS_URL=redis_url)
    with (
        two_gateways(env) as (first, second),
        # (keep-alive room for every thread: httpx closing surplus pooled connections while
        # other threads use the pool made this test flaky on a loaded machine: EBADF)
        httpx.Client(
            headers={"X-API-Key": key},
            timeout=30,
            limits=httpx.Limits(max_connections=40, max_keepalive_connections=40),
        ) as client,
        ThreadPoolExecutor(max_workers=40) as pool,
    ):
        # one client shared by the threads: a client per call would cost more than the calls
        replies = list(pool.map(lambda base: client.get(f"{base}/echo/hit"), [first, second] * 100))
    by_status: dict[int, list[httpx.Response]] = {}
    for reply in replies:
        by_status.setdefault(reply.status_code, []).append(reply)
    assert {s: len(r) for s, r in by_status.items()} == {200: 50, 429: 150}
    # both processes did admit calls, so the count really was shared
    assert {str(r.url).rsplit("/echo", 1)[0] for r in by_status[200]} == {first, second}
    for refused in by_status[429]:
        assert 1 <= int(refused.headers["retry-after"]) <= longest_retry_after(50, 60)
        assert refused.json()["type"] == "/-/problems/rate-limited"
