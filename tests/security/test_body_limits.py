"""Request bodies are bounded by default and streamed, never held whole (issue 9, item 11).

The campaign sent a 200 MB body to an in-process app and watched the gateway grow from 169 to
540 MB. Now every API has a body limit (``TOLLWAY_MAX_BODY_BYTES``, 10 MiB by default, or the
API's ``request-size-limit``): a larger ``Content-Length`` is refused before anything is
forwarded, a chunked body as soon as it crosses the limit.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.servers import serve_gateway

from .backends import RecordingBackend, exchange
from .rawhttp import stream_until_answered

MB = 1024 * 1024
DEFAULT_LIMIT = 10 * MB


@pytest.fixture
def base(
    sqlite_engine: Engine, sqlite_url: str, backend: RecordingBackend, transport: str
) -> Iterator[str]:
    apply(
        sqlite_engine,
        {
            "backends": {"rec": {"url": backend.url}, "app": {"app": "tollway.samples.echo:app"}},
            "apis": {
                "http": {"path": "/http", "backend": "rec", "subscription_required": False},
                "inproc": {"path": "/inproc", "backend": "app", "subscription_required": False},
                "small": {
                    "path": "/small",
                    "backend": "rec",
                    "subscription_required": False,
                    "policies": [{"type": "request-size-limit", "max_bytes": 100}],
                },
            },
        },
    )
    with serve_gateway(make_gateway(sqlite_engine, sqlite_url), transport) as url:
        yield url


def chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"z" * size


@pytest.mark.parametrize("api", ["http", "inproc"])
def test_a_body_over_the_default_limit_is_refused_before_forwarding(
    base: str, backend: RecordingBackend, api: str
) -> None:
    head = f"POST /{api}/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: {DEFAULT_LIMIT + 1}\r\n"
    answer = exchange(base, head.encode() + b"\r\n" + b"z" * 4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer and b"at most 10485760" in answer
    assert backend.requests == []


@pytest.mark.parametrize("api", ["http", "inproc"])
def test_a_chunked_body_is_cut_at_the_default_limit(
    base: str, backend: RecordingBackend, api: str
) -> None:
    head = f"POST /{api}/upload HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"40000\r\n" + b"z" * 0x40000 + b"\r\n"  # 256 KiB per chunk
    _, answer = stream_until_answered(base, head.encode(), chunk, DEFAULT_LIMIT + 4 * MB)
    assert answer.status == 413 and answer.closed  # (the rest of the body is never read)
    assert answer.problem()["type"] == "/-/problems/request-too-large"
    assert all(len(seen.body) <= DEFAULT_LIMIT for seen in backend.requests)


def test_a_request_size_limit_policy_sets_the_api_limit(base: str) -> None:
    assert httpx.post(f"{base}/small/x", content=b"a" * 101).status_code == 413
    answer = httpx.post(f"{base}/small/x", content=b"a" * 100)
    assert answer.status_code == 200


def test_in_process_apps_receive_bodies_streamed(base: str) -> None:
    size = 8 * MB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        answer = httpx.post(f"{base}/inproc/upload", content=chunks(size), timeout=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256(b"z" * size).hexdigest()
    assert answer.json()["body_size"] == size and answer.json()["body_sha256"] == expected
    # Client, gateway and app share this process: 8 MB went through it.
    assert peak < 4 * MB, f"peak Python memory {peak / MB:.1f} MB: the body was held whole"
