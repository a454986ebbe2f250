"""Gateway and upstream over real sockets on 127.0.0.1: forwarding, errors, streaming, paths."""

from __future__ import annotations

import hashlib
import http.client
import tracemalloc
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from tollway.gateway.app import create_gateway
from tollway.samples.echo import app as echo_app
from tollway.settings import Settings

from ..servers import free_port, serve_in_thread
from .conftest import SECRET, apply

MB = 1024 * 1024


@pytest.fixture
def upstream() -> Iterator[str]:
    with serve_in_thread(echo_app) as base:
        yield base


def socket_config(upstream: str, **backend: Any) -> dict[str, Any]:
    return {
        "backends": {
            "echo": {"url": upstream, "read_timeout": 1.0, **backend},
            "based": {"url": f"{upstream}/base/path"},
            "dead": {"url": f"http://127.0.0.1:{free_port()}", "connect_timeout": 1.0},
        },
        "apis": {
            "echo": {"path": "/echo", "backend": "echo"},
            "open": {"path": "/open", "backend": "echo", "subscription_required": False},
            "based": {"path": "/based", "backend": "based", "subscription_required": False},
            "dead": {"path": "/dead", "backend": "dead", "subscription_required": False},
        },
        "products": {"starter": {"apis": ["echo"]}},
    }


@pytest.fixture
def gateway_url(sqlite_engine: Engine, sqlite_url: str, upstream: str) -> Iterator[str]:
    apply(sqlite_engine, socket_config(upstream))
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=sqlite_engine)
    with serve_in_thread(gateway, lifespan="on") as base:
        yield base


def raw_get(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (httpx would normalise it)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_forwarded_request_has_proxy_headers_and_no_hop_by_hop(gateway_url: str) -> None:
    response = httpx.get(
        f"{gateway_url}/open/where?x=1",
        headers={"Connection": "keep-alive, X-Drop-Me", "X-Drop-Me": "1", "TE": "trailers"},
    )
    assert response.status_code == 200
    seen = response.json()
    headers = dict(seen["headers"])
    assert seen["path"] == "/where" and seen["query"] == "x=1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == urlsplit(gateway_url).netloc
    assert headers["x-forwarded-prefix"] == "/open"
    assert "x-drop-me" not in headers and "te" not in headers


def test_host_header_names_the_backend(gateway_url: str, upstream: str) -> None:
    seen = httpx.get(f"{gateway_url}/open/x").json()
    assert dict(seen["headers"])["host"] == urlsplit(upstream).netloc


def test_backend_base_path_is_prepended(gateway_url: str) -> None:
    seen = httpx.get(f"{gateway_url}/based/charts/bar?x=1").json()
    assert seen["path"] == "/base/path/charts/bar"


def test_upstream_connections_are_kept_alive(gateway_url: str) -> None:
    with httpx.Client(base_url=gateway_url) as client:
        ports = {tuple(client.get("/open/x").json()["client"]) for _ in range(20)}
    assert len(ports) == 1  # twenty requests, one pooled upstream connection


def test_unreachable_backend_is_502_problem(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}/dead/x")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/-/problems/backend-unreachable"
    assert "Traceback" not in response.text


def test_slow_backend_is_504_problem(gateway_url: str) -> None:
    response = httpx.get(f"{gateway_url}/open/slow?seconds=3", timeout=10)
    assert response.status_code == 504
    assert response.json()["type"] == "/-/problems/backend-timeout"


def test_gateway_keeps_serving_after_a_timeout(gateway_url: str) -> None:
    assert httpx.get(f"{gateway_url}/open/slow?seconds=3", timeout=10).status_code == 504
    assert httpx.get(f"{gateway_url}/open/fine").status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "backend_path"),
    [
        ("/open//a//b", 200, "/a/b"),
        ("/open/a/./b", 200, "/a/b"),
        ("/open/a/../b", 200, "/b"),
        ("/open/a/%2e%2e/b", 200, "/b"),
        ("/open/../echo/x", 401, None),  # resolves to /echo/x, which needs a key
        ("/open/%2e%2e/echo/x", 401, None),
        ("/open/..%2f..%2fecho/x", 400, None),
        ("/open/a%2Fb", 400, None),
        ("/open/a%5cb", 400, None),
        ("/open/../../etc/passwd", 400, None),
        ("/open/%00", 400, None),
    ],
)
def test_path_normalisation_cannot_escape_an_api(
    gateway_url: str, path: str, status: int, backend_path: str | None
) -> None:
    got, body = raw_get(gateway_url, path)
    assert got == status
    if backend_path is not None:
        assert httpx.Response(200, content=body).json()["path"] == backend_path


def test_multi_megabyte_bodies_stream_both_ways_in_bounded_memory(gateway_url: str) -> None:
    size = 24 * MB
    chunk = b"y" * (256 * 1024)

    def upload() -> Iterator[bytes]:
        for _ in range(size // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        sent = httpx.post(f"{gateway_url}/open/upload", content=upload(), timeout=60)
        received = 0
        with httpx.stream("GET", f"{gateway_url}/open/stream?size={size}", timeout=60) as down:
            for part in down.iter_raw():
                received += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256(chunk * (size // len(chunk))).hexdigest()
    assert sent.json()["body_size"] == size and sent.json()["body_sha256"] == expected
    assert received == size
    # Client, gateway and backend all run in this process: 48 MB went through it.
    assert peak < 8 * MB, f"peak Python memory {peak / MB:.1f} MB: a body was held whole"


def test_chunked_upload_reaches_backend_intact(gateway_url: str) -> None:
    parts = [b"a" * 1000, b"b" * 70000, b"c" * 5]
    response = httpx.post(f"{gateway_url}/open/upload", content=iter(parts))
    assert response.json()["body_size"] == sum(map(len, parts))
    assert response.json()["body_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_head_request_does_not_break_the_pooled_connection(gateway_url: str) -> None:
    with httpx.Client(base_url=gateway_url) as client:
        head = client.head("/open/x")
        after = client.get("/open/y")
    assert head.status_code == 200 and head.content == b""
    assert after.status_code == 200 and after.json()["path"] == "/y"


def test_post_with_json_body(gateway_url: str) -> None:
    response = httpx.post(f"{gateway_url}/open/items", json={"a": 1})
    seen = response.json()
    assert seen["method"] == "POST" and seen["body_size"] == len(b'{"a":1}')
