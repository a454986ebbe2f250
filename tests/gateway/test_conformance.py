"""One meaning per behaviour on both transports (issue 10): timeouts, disconnects, replays.

Each test runs over real sockets on the fast path and the ASGI path (the ``transport``
fixture) against a scripted backend that stalls, streams slowly or closes at an awkward moment.

- ``timeout`` policy: seconds from forwarding until the backend's response head arrives (APIM's
  ``forward-request timeout``); 504 when it does not. After the head the body streams under the
  backend's idle ``read_timeout``; a stream that stalls longer is cut and the client connection
  closed, and usage records the status the client received.
- A client that leaves mid-response: the backend connection is dropped at once; usage records
  499 with the bytes actually delivered.
- A pooled connection that turns out to be closed: the request is replayed once on a new
  connection when nothing came back and its body (if any) was small and complete (64 KiB);
  otherwise 502.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.security.backends import exchange, read_request, scripted_backend
from tests.servers import serve_gateway

from .test_usage import usage_rows

HEAD_200 = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"


def config(url: str) -> dict[str, object]:
    return {
        "backends": {"scripted": {"url": url, "read_timeout": 1.0}},
        "apis": {
            "open": {"path": "/open", "backend": "scripted", "subscription_required": False},
            "timed": {
                "path": "/timed",
                "backend": "scripted",
                "subscription_required": False,
                "policies": [{"type": "timeout", "seconds": 0.5}],
            },
        },
    }


@contextmanager
def gateway_for(
    engine: Engine, database_url: str, transport: str, handler: Callable[[socket.socket, int], None]
) -> Iterator[tuple[str, object]]:
    with scripted_backend(handler) as url:
        apply(engine, config(url))
        gateway = make_gateway(engine, database_url, usage_flush_interval=0.1)
        with serve_gateway(gateway, transport) as base:
            yield base, gateway


def slow_stream(chunks: int, pause: float) -> Callable[[socket.socket, int], None]:
    """Answer each request with a head at once and ``chunks`` chunks ``pause`` s apart."""

    def handler(conn: socket.socket, number: int) -> None:
        while read_request(conn):
            conn.sendall(HEAD_200)
            for _ in range(chunks):
                time.sleep(pause)
                conn.sendall(b"5\r\nchunk\r\n")
            conn.sendall(b"0\r\n\r\n")

    return handler


def test_timeout_policy_bounds_the_wait_for_the_head_not_the_stream(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    """Streaming for 1.2 s under a 0.5 s timeout is fine: the head came at once."""
    with gateway_for(sqlite_engine, sqlite_url, transport, slow_stream(6, 0.2)) as (base, _):
        answer = httpx.get(f"{base}/timed/stream", timeout=10)
    assert answer.status_code == 200
    assert answer.text == "chunk" * 6


def test_timeout_policy_gives_504_when_the_head_is_late(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    def late(conn: socket.socket, number: int) -> None:
        read_request(conn)
        time.sleep(0.8)  # under read_timeout (1 s), over the policy's 0.5 s
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        time.sleep(1)

    with gateway_for(sqlite_engine, sqlite_url, transport, late) as (base, _):
        answer = httpx.get(f"{base}/timed/x", timeout=10)
    assert answer.status_code == 504
    assert answer.json()["type"] == "/-/problems/backend-timeout"


def test_a_stalled_stream_is_cut_after_read_timeout(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    def stalls(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(HEAD_200 + b"5\r\nfirst\r\n")
        time.sleep(3)  # well past read_timeout (1 s)

    with gateway_for(sqlite_engine, sqlite_url, transport, stalls) as (base, _):
        with pytest.raises(httpx.RemoteProtocolError):  # the connection ends mid-body
            httpx.get(f"{base}/open/x", timeout=10)
        rows = wait_for_usage(sqlite_engine)
    assert rows[(0, "open", 2)][0] == 1  # recorded as what the client got: a 200


def test_a_client_leaving_mid_response_drops_the_backend_and_records_499(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    backend_saw_close = threading.Event()

    def endless(conn: socket.socket, number: int) -> None:
        read_request(conn)
        conn.sendall(HEAD_200)
        for _ in range(100):  # 5 s of stream unless the gateway lets go
            try:
                conn.sendall(b"5\r\nchunk\r\n")
            except OSError:
                backend_saw_close.set()
                return
            time.sleep(0.05)

    with gateway_for(sqlite_engine, sqlite_url, transport, endless) as (base, _):
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as client:
            client.sendall(b"GET /open/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            client.recv(200)
        assert backend_saw_close.wait(3), "the backend kept streaming to nobody"
        rows = wait_for_usage(sqlite_engine)
    assert (0, "open", 4) in rows and rows[(0, "open", 4)][0] == 1  # 499 is a 4xx


def closes_pooled_connection(conn: socket.socket, number: int) -> None:
    """Answer the first request on a connection; take the second and close without a word."""
    first = read_request(conn)
    if not first:
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
    read_request(conn)
    conn.close()


def test_a_small_post_on_a_stale_pooled_connection_is_replayed(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    with (
        gateway_for(sqlite_engine, sqlite_url, transport, closes_pooled_connection) as (base, _),
        httpx.Client() as client,
    ):
        assert client.get(f"{base}/open/warm").text == "first"
        answer = client.post(f"{base}/open/again", content=b"x" * 1000)
    assert answer.status_code == 200 and answer.text == "first"


def test_a_streamed_body_on_a_stale_pooled_connection_is_not_replayed(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    def big() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * 65536

    with (
        gateway_for(sqlite_engine, sqlite_url, transport, closes_pooled_connection) as (base, _),
        httpx.Client() as client,
    ):
        assert client.get(f"{base}/open/warm").text == "first"
        answer = client.post(f"{base}/open/again", content=big())
    assert answer.status_code == 502


def wait_for_usage(engine: Engine) -> dict[tuple[int, str, int], tuple[int, int, int]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = usage_rows(engine)
        if rows:
            return rows
        time.sleep(0.05)
    return usage_rows(engine)


def answers(conn: socket.socket, number: int) -> None:
    """Answer by path: /204, /304, /chunked (with a trailer), /close; else 200 with a length."""
    while request := read_request(conn):
        target = request.split(b" ", 2)[1]
        if target.endswith(b"/204"):
            conn.sendall(b"HTTP/1.1 204 No Content\r\nx-kind: empty\r\n\r\n")
        elif target.endswith(b"/304"):
            conn.sendall(b'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\n\r\n')
        elif target.endswith(b"/chunked"):
            conn.sendall(HEAD_200.replace(b"\r\n\r\n", b"\r\ntrailer: x-sum\r\n\r\n"))
            conn.sendall(b"3\r\nabc\r\n3\r\ndef\r\n0\r\nx-sum: 6\r\n\r\n")
        elif target.endswith(b"/close"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-close")
            return
        else:
            body = b"hello " + target
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))


def head_of(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return lines[0], fields, body


@pytest.mark.parametrize(
    ("request_bytes", "status_line", "expect_headers", "expect_body"),
    [
        (
            b"HEAD /open/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK",
            {"content-length": "8"},
            b"",
        ),
        (
            b"GET /open/204 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 204 No Content",
            {"x-kind": "empty"},
            b"",
        ),
        (
            b"GET /open/304 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 304 Not Modified",
            {"etag": '"v1"'},
            b"",
        ),
        (
            b"GET /open/close HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK",
            {"connection": "close"},
            None,
        ),
    ],
    ids=["head", "204", "304", "backend-closes"],
)
def test_bodiless_and_close_delimited_answers_are_the_same_on_both(
    sqlite_engine: Engine,
    sqlite_url: str,
    transport: str,
    request_bytes: bytes,
    status_line: str,
    expect_headers: dict[str, str],
    expect_body: bytes | None,
) -> None:
    with gateway_for(sqlite_engine, sqlite_url, transport, answers) as (base, _):
        status, fields, body = head_of(exchange(base, request_bytes))
    assert status == status_line
    for name, value in expect_headers.items():
        assert fields.get(name) == value, fields
    if expect_body is not None:
        assert body == expect_body
    else:  # a close-delimited backend body arrives whole, re-framed for the client
        assert b"until-close" in body
    if status_line.startswith(("HTTP/1.1 204", "HTTP/1.1 304")):
        assert "transfer-encoding" not in fields and "content-length" not in fields


def test_chunked_answers_and_uploads_stream_through_on_both(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    with gateway_for(sqlite_engine, sqlite_url, transport, answers) as (base, _):
        answer = httpx.get(f"{base}/open/chunked")
        upload = httpx.post(f"{base}/open/up", content=iter([b"a" * 10, b"b" * 10]))
    assert answer.status_code == 200 and answer.text == "abcdef"
    assert answer.headers.get("transfer-encoding") == "chunked"
    assert upload.status_code == 200 and upload.text == "hello /up"


def test_expect_100_continue_gets_the_interim_answer_on_both(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    with gateway_for(sqlite_engine, sqlite_url, transport, answers) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(
                b"POST /open/up HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            )
            interim = conn.recv(100)
            conn.sendall(b"hello")
            conn.settimeout(2)
            rest = b""
            while data := conn.recv(65536):
                rest += data
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    status, _, body = head_of(interim[25:] + rest)
    assert status == "HTTP/1.1 200 OK" and body == b"hello /up"
