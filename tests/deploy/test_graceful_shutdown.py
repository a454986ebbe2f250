"""SIGTERM under load: ``tollway serve --workers 2`` on the real PostgreSQL and Redis.

What a deployment needs from a stop (docker stop, systemctl stop, a rolling update): requests
already being served finish with complete responses, and usage still in memory is written.
Usage is flushed only at shutdown here (a 60 s flush interval), so the usage rows in the store
can only add up if the shutdown flush works.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import REDIS_URL, require_service
from tests.servers import free_port, serve_in_thread, tollway_env
from tollway.db.models import Usage
from tollway.db.session import make_engine
from tollway.samples import echo
from tollway.types import Receive, Scope, Send

from .helpers import CLEAN_EXIT, prepare_store, process_env, running, stop, wait_http

SECRET = "test-secret-key-0123456789"
THREADS = 4
PROBES = 3


class HoldingUpstream:
    """The echo sample, plus ``/hold``: answered only once the test releases it, so the test
    knows for certain that these requests are inside the gateway when SIGTERM arrives."""

    def __init__(self) -> None:
        self.arrived = threading.Semaphore(0)
        self.release = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/hold":
            self.arrived.release()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        await echo.app(scope, receive, send)


@dataclass
class Tally:
    """What the clients saw. ``lock`` guards every field."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    complete: int = 0
    refused: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    cut_short: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)


def usage_calls(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.coalesce(func.sum(Usage.calls), 0)).where(Usage.status_class == 2)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def wait_not_serving(base: str) -> None:
    """Until a new request gets no answer: the workers stopped accepting connections.

    (The supervisor process keeps the listening socket open until it exits, so new
    connections are queued by the kernel rather than refused while the workers drain.)
    """
    for _ in range(600):
        try:
            httpx.get(f"{base}/-/health", timeout=0.5)
        except httpx.HTTPError:
            return
        time.sleep(0.05)
    raise AssertionError("the workers kept accepting connections after SIGTERM")


def one_call(url: str, key: str, tally: Tally, sigterm_sent: threading.Event) -> bool:
    """One request on a fresh connection; returns False once the listener refuses us."""
    before = sigterm_sent.is_set()
    try:
        with (
            httpx.Client(timeout=20) as http,
            http.stream("GET", url, headers={"X-API-Key": key}) as response,
        ):
            status = response.status_code
            try:
                body = response.read()
            except httpx.HTTPError as exc:  # headers came, the body did not: a broken response
                with tally.lock:
                    tally.cut_short.append(f"{status}: {exc!r}")
                return True
    except httpx.ConnectError:
        with tally.lock:
            tally.refused += 1
        return False
    except httpx.HTTPError as exc:
        # Connected, but no response at all (e.g. reset while queued in the listen backlog,
        # never accepted by the server). Allowed only if the gateway did not count it either:
        # the usage check below catches a call that was served but whose answer was lost.
        with tally.lock:
            tally.unanswered.append(f"{'before' if before else 'after'} SIGTERM: {exc!r}")
        return True
    with tally.lock:
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status == 200 and body.startswith(b"{"):
            tally.complete += 1
    return True


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_mid_load_finishes_in_flight_requests_and_flushes_usage(
    postgres_url: str, tmp_path: Path
) -> None:
    redis_url = require_service(REDIS_URL, "redis")
    upstream = HoldingUpstream()
    with serve_in_thread(upstream) as upstream_url:
        key = prepare_store(postgres_url, upstream_url, "load@example.com")
        port = free_port()
        env = process_env(
            tollway_env(
                postgres_url,
                TOLLWAY_REDIS_URL=redis_url,
                TOLLWAY_PORT=str(port),
                TOLLWAY_USAGE_FLUSH_INTERVAL="60",
            )
        )
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/echo/slow?seconds=0.05"
        tally = Tally()
        sigterm_sent = threading.Event()
        probe_results: list[tuple[int, bytes] | str] = []
        deadline = 0.0

        def client_loop() -> None:
            while time.monotonic() < deadline and one_call(url, key, tally, sigterm_sent):
                pass

        def probe() -> None:
            try:
                response = httpx.get(f"{base}/echo/hold", headers={"X-API-Key": key}, timeout=30)
                probe_results.append((response.status_code, response.content))
            except httpx.HTTPError as exc:
                probe_results.append(repr(exc))

        with running(["tollway", "serve", "--workers", "2"], env, cwd=tmp_path) as process:
            wait_http(f"{base}/-/ready", process, timeout=60)
            # Both workers must have loaded the key before the load starts.
            warm_up = [httpx.get(url, headers={"X-API-Key": key}).status_code for _ in range(4)]
            assert warm_up == [200] * 4, warm_up
            deadline = time.monotonic() + 15
            threads = [threading.Thread(target=client_loop) for _ in range(THREADS)]
            threads += [threading.Thread(target=probe) for _ in range(PROBES)]
            for thread in threads:
                thread.start()
            for _ in range(PROBES):
                assert upstream.arrived.acquire(timeout=30), "probe did not reach the upstream"
            process.send_signal(signal.SIGTERM)
            sigterm_sent.set()
            wait_not_serving(base)  # new connections are no longer served; probes still are
            upstream.release.set()
            for thread in threads:
                thread.join()
            code, output = stop(process)

    assert code in CLEAN_EXIT, output
    assert "Traceback" not in output
    assert tally.cut_short == [], "responses cut off after their headers were sent"
    assert tally.statuses.keys() == {200}, tally.statuses
    # Requests inside the gateway at SIGTERM got their complete answers after the listener
    # had closed.
    assert len(probe_results) == PROBES
    for result in probe_results:
        assert not isinstance(result, str), result
        assert result[0] == 200 and result[1].startswith(b"{"), result
    assert tally.refused > 0, "the listener should close during the stop"
    # The warm-up calls plus every complete response of the load, all written at shutdown.
    assert usage_calls(postgres_url) == tally.complete + len(warm_up) + PROBES, (
        tally,
        output[-2000:],
    )
