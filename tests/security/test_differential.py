"""Differential corpus: ambiguous and malformed requests sent to Tollway and to nginx.

Each request goes to the real nginx (as a keep-alive reverse proxy) and to Tollway (both
transports), each in front of its own recording backend (h11, strict). For every case Tollway
either refuses it (the backend sees nothing) or forwards exactly one request that the backend
parses without complaint; and it never forwards something nginx refuses. nginx is the
reference an HTTP intermediary is measured against (CONVENTIONS.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import require_tool
from tests.proofs.conftest import apply, make_gateway
from tests.servers import free_port, serve_gateway

from .backends import RecordingBackend, exchange, recording_backend
from .conftest import front

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: b\r\n\r\n"


def req(text: str, body: bytes = b"") -> bytes:
    return text.replace("\n", "\r\n").encode() + b"\r\n" + body


CORPUS: dict[str, bytes] = {
    "cl-and-te": req(
        "POST /open/x HTTP/1.1\nHost: gw\nContent-Length: 4\nTransfer-Encoding: chunked\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "te-and-cl": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\nContent-Length: 40\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "duplicate-cl-different": req(
        "POST /open/x HTTP/1.1\nHost: gw\nContent-Length: 3\nContent-Length: 37\n", b"abc"
    ),
    "duplicate-cl-same": req(
        "POST /open/x HTTP/1.1\nHost: gw\nContent-Length: 3\nContent-Length: 3\n", b"abc"
    ),
    "cl-list": req("POST /open/x HTTP/1.1\nHost: gw\nContent-Length: 3, 3\n", b"abc"),
    "cl-plus": req("POST /open/x HTTP/1.1\nHost: gw\nContent-Length: +3\n", b"abc"),
    "cl-negative": req("POST /open/x HTTP/1.1\nHost: gw\nContent-Length: -1\n", b"abc"),
    "cl-hex": req("POST /open/x HTTP/1.1\nHost: gw\nContent-Length: 0x3\n", b"abc"),
    "te-obs-fold": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding:\n chunked\nContent-Length: 3\n",
        b"0\r\n\r\n",
    ),
    "te-space-before-colon": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding : chunked\nContent-Length: 5\n",
        b"0\r\n\r\n",
    ),
    "te-xchunked": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: xchunked\n", b"0\r\n\r\n"
    ),
    "te-gzip-chunked": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: gzip, chunked\n", b"0\r\n\r\n"
    ),
    "te-chunked-gzip": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked, gzip\n", b"0\r\n\r\n"
    ),
    "te-twice": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
        b"0\r\n\r\n",
    ),
    "te-in-http10": req(
        "POST /open/x HTTP/1.0\nHost: gw\nTransfer-Encoding: chunked\n", b"0\r\n\r\n" + SMUGGLED
    ),
    "bare-lf-headers": b"GET /open/x HTTP/1.1\nHost: gw\n\n",
    "bare-lf-chunk": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n", b"3\nabc\n0\n\n"
    ),
    "chunk-size-invalid": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n0\r\n\r\n"
    ),
    "chunk-size-overflow": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n",
        b"fffffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
    ),
    "chunk-size-negative": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n", b"-3\r\nabc\r\n0\r\n\r\n"
    ),
    "chunk-extension-huge": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n",
        b"3;" + b"a" * 20000 + b"\r\nabc\r\n0\r\n\r\n",
    ),
    "chunk-trailer-cl": req(
        "POST /open/x HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n",
        b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n",
    ),
    "connection-content-length": req(
        f"POST /open/x HTTP/1.1\nHost: gw\nConnection: Content-Length\n"
        f"Content-Length: {len(SMUGGLED)}\n",
        SMUGGLED,
    ),
    "connection-transfer-encoding": req(
        "POST /open/x HTTP/1.1\nHost: gw\nConnection: Transfer-Encoding\n"
        "Transfer-Encoding: chunked\n",
        b"3\r\nabc\r\n0\r\n\r\n",
    ),
    "two-hosts": b"GET /open/x HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\n",
    "no-host-http11": b"GET /open/x HTTP/1.1\r\n\r\n",
    "host-with-at": b"GET /open/x HTTP/1.1\r\nHost: gw@evil.example\r\n\r\n",
    "header-name-space": b"GET /open/x HTTP/1.1\r\nHost: gw\r\nX Bad: 1\r\n\r\n",
    "header-nul": b"GET /open/x HTTP/1.1\r\nHost: gw\r\nX-Bad: a\x00b\r\n\r\n",
    "http2-version": b"GET /open/x HTTP/2.0\r\nHost: gw\r\n\r\n",
    "cl0-pipelined-smuggle": req("GET /open/x HTTP/1.1\nHost: gw\nContent-Length: 0\n")
    + SMUGGLED.replace(b"/admin", b"/open/second"),
}


@dataclass
class Target:
    base: str
    backend: RecordingBackend


def nginx_config(prefix: Path, port: int, backend: str) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"  {kind}_temp_path {prefix}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log off;\n{temp}"
        f"  upstream backend {{ server {backend.removeprefix('http://')}; keepalive 8; }}\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        "    location /open/ {\n      proxy_pass http://backend/;\n"
        '      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n    }\n  }\n}\n'
    )


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    binary = require_tool("nginx", package="nginx-light", path="/usr/sbin/nginx")
    prefix = tmp_path_factory.mktemp("nginx-diff")
    port = free_port()
    with recording_backend() as backend:
        (prefix / "nginx.conf").write_text(nginx_config(prefix, port, backend.url))
        process = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    httpx.get(f"{base}/open/ready", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError("nginx did not start") from None
                    time.sleep(0.05)
            yield Target(base, backend)
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture
def tollway(sqlite_engine: Engine, sqlite_url: str, transport: str) -> Iterator[Target]:
    with recording_backend() as backend:
        apply(sqlite_engine, front(backend.url))
        with serve_gateway(make_gateway(sqlite_engine, sqlite_url), transport) as base:
            yield Target(base, backend)


def send(target: Target, raw: bytes) -> tuple[bytes, int]:
    """The answer, and how many requests reached the backend because of it."""
    before = len(target.backend.requests)
    answer = exchange(target.base, raw)
    time.sleep(0.05)  # (the backend thread records what it read)
    return answer, len(target.backend.requests) - before


def status(answer: bytes) -> int:
    return int(answer[9:12]) if answer.startswith(b"HTTP/1.") else 0


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_tollway_refuses_or_forwards_one_clean_request(
    case: str, tollway: Target, nginx: Target
) -> None:
    raw = CORPUS[case]
    ours, forwarded = send(tollway, raw)
    theirs, nginx_forwarded = send(nginx, raw)
    expected = 2 if case == "cl0-pipelined-smuggle" else 1  # (two honest pipelined requests)
    assert not tollway.backend.errors, f"backend could not parse: {tollway.backend.errors}"
    if forwarded == 0:
        assert 400 <= status(ours) < 600, ours[:300]
        assert b"application/problem+json" in ours, ours[:300]
    else:
        assert forwarded == expected, (ours[:300], [r.target for r in tollway.backend.requests])
        assert nginx_forwarded > 0, (
            f"nginx refused {case} ({theirs[:80]!r}) but Tollway forwarded it"
        )
    for seen in tollway.backend.requests:
        assert not seen.target.startswith("/admin"), f"smuggled: {seen.target}"
