"""Gateway and upstream over real sockets on 127.0.0.1: forwarding, errors, streaming, paths."""

from __future__ import annotations

import hashlib
import http.client
import socket
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.samples.echo import app as echo_app
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..conftest import REDIS_URL, require_service
from ..servers import free_port, serve_gateway, serve_in_thread
from .conftest import SECRET, apply
from .test_usage import usage_rows

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
            "locked": {"path": "/locked", "backend": "echo"},  # in no product
        },
        "products": {"starter": {"apis": ["echo"]}},
    }


@pytest.fixture
def protocol(transport: str) -> str:
    """Every socket test runs against the ASGI path and Tollway's fast path."""
    return transport


@pytest.fixture
def gateway(sqlite_engine: Engine, sqlite_url: str, upstream: str) -> Gateway:
    apply(sqlite_engine, socket_config(upstream))
    settings = Settings(database_url=sqlite_url, secret_key=SECRET, max_body_bytes=64 * MB)  # type: ignore[arg-type]
    return create_gateway(settings, engine=sqlite_engine)


@pytest.fixture
def gateway_url(gateway: Gateway, protocol: str) -> Iterator[str]:
    with serve_gateway(gateway, protocol) as base:
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


def raw_exchange(base: str, payload: bytes, *, until: bytes, timeout: float = 10) -> bytes:
    """Write ``payload`` on one raw connection and read until ``until`` has arrived."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout) as s:
        s.sendall(payload)
        received = b""
        while until not in received:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_keys_are_checked_and_stripped_and_calls_counted(
    sqlite_engine: Engine, sqlite_url: str, upstream: str, protocol: str
) -> None:
    apply(sqlite_engine, socket_config(upstream))
    sessions = session_factory(sqlite_engine)
    with transaction(sessions) as session:
        user = users.create_user(session, "dev@example.com")
        keys = subscriptions.create_subscription(
            session, user, subscriptions.get_product(session, "starter")
        )
        sid = keys.subscription.id
    settings = Settings(database_url=sqlite_url, secret_key=SECRET, max_body_bytes=64 * MB)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=sqlite_engine)
    with (
        serve_gateway(gateway, protocol) as base,
        httpx.Client(base_url=base) as client,
    ):
        missing = client.get("/echo/x")
        wrong = client.get("/echo/x", headers={"X-API-Key": "tw_" + "0" * 46})
        by_header = client.get("/echo/x?a=1", headers={"X-API-Key": keys.primary})
        by_query = client.get(f"/echo/y?subscription-key={keys.secondary}&b=2")
        forbidden = client.get("/locked/x", headers={"X-API-Key": keys.primary})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "/-/problems/missing-key"
    assert wrong.json()["type"] == "/-/problems/invalid-key"
    assert by_header.status_code == 200 and by_query.status_code == 200
    header_seen = by_header.json()
    assert "x-api-key" not in dict(header_seen["headers"])  # the backend never sees the key
    assert header_seen["query"] == "a=1"
    assert by_query.json()["query"] == "b=2"
    assert forbidden.status_code == 403
    # Stopping the server flushed the usage buffer to the store.
    rows = usage_rows(sqlite_engine)
    assert rows[(sid, "echo", 2)][0] == 2
    assert rows[(0, "echo", 4)][0] == 2


def test_pipelined_requests_are_answered_in_order(gateway_url: str) -> None:
    host = urlsplit(gateway_url).netloc
    requests = b"".join(
        f"GET /open/{name} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for name in ("a", "b", "c")
    )
    received = raw_exchange(gateway_url, requests, until=b'"/c"')
    assert received.count(b"HTTP/1.1 200") == 3
    assert received.index(b'"/a"') < received.index(b'"/b"') < received.index(b'"/c"')


def test_expect_continue_is_honoured(gateway_url: str) -> None:
    parts = urlsplit(gateway_url)
    head = (
        f"POST /open/upload HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: 5\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as s:
        s.sendall(head)
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        received = b""
        while b"body_size" not in received:
            chunk = s.recv(65536)
            assert chunk, "connection closed before the response"
            received += chunk
    assert received.startswith(b"HTTP/1.1 200") or b"HTTP/1.1 200" in received
    assert b'"body_size": 5' in received


def test_refused_expect_continue_gets_the_problem_not_a_continue(gateway_url: str) -> None:
    head = (
        f"POST /echo/upload HTTP/1.1\r\nHost: {urlsplit(gateway_url).netloc}\r\n"
        "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    received = raw_exchange(gateway_url, head, until=b"}")
    assert received.startswith(b"HTTP/1.1 401")
    assert b"100 Continue" not in received


def test_client_leaving_mid_response_does_not_disturb_the_gateway(gateway_url: str) -> None:
    with httpx.stream("GET", f"{gateway_url}/open/stream?size={64 * MB}", timeout=30) as down:
        first = next(down.iter_raw())
        assert first
    # The client hung up after one chunk; the gateway drops that backend connection and goes on.
    with httpx.Client(base_url=gateway_url) as client:
        assert all(client.get(f"/open/after{n}").status_code == 200 for n in range(5))


def test_gateway_pages_are_served_beside_the_api(gateway_url: str) -> None:
    assert httpx.get(f"{gateway_url}/-/health").status_code == 200
    assert httpx.get(f"{gateway_url}/nowhere").status_code == 404
    assert httpx.get(f"{gateway_url}/docs").status_code == 200


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_policies_apply_on_both_paths(
    sqlite_engine: Engine, sqlite_url: str, upstream: str, protocol: str, store: str
) -> None:
    nonce = uuid.uuid4().hex[:8]  # fresh Redis counters for every run
    cfg = socket_config(upstream)
    cfg["named_values"] = {"backend-key": {"value": "bk-secret", "secret": True}}
    cfg["apis"]["limited"] = {
        "path": "/limited",
        "backend": "echo",
        "subscription_required": False,
        "policies": [
            {"type": "cors", "origins": ["https://app.example.com"]},
            {"type": "rate-limit", "calls": 2, "period": 60, "key": "ip", "name": f"r{nonce}"},
            {
                "type": "set-header",
                "request": {"x-backend-key": "{{backend-key}}"},
                "response": {"x-served-by": "tollway"},
            },
        ],
    }
    apply(sqlite_engine, cfg)
    redis_url = "memory://" if store == "memory" else require_service(REDIS_URL, "redis")
    settings = Settings(
        database_url=sqlite_url,
        secret_key=SECRET,  # type: ignore[arg-type]
        redis_url=redis_url,
    )
    gateway = create_gateway(settings, engine=sqlite_engine)
    origin = {"Origin": "https://app.example.com"}
    with (
        serve_gateway(gateway, protocol) as base,
        httpx.Client(base_url=base) as client,
    ):
        preflight = client.options(
            "/limited/x", headers={**origin, "Access-Control-Request-Method": "GET"}
        )
        answers = [client.get("/limited/x", headers=origin) for _ in range(3)]
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    first, _, refused = answers
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert dict(first.json()["headers"])["x-backend-key"] == "bk-secret"
    assert first.headers["x-served-by"] == "tollway"
    assert first.headers["ratelimit"].startswith(f'"r{nonce}";r=1;')
    assert first.headers["access-control-allow-origin"] == "https://app.example.com"
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"
    assert refused.json()["type"] == "/-/problems/rate-limited"
