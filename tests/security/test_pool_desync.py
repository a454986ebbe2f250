"""Backend responses never cross from one client to the next (issue 9, item 2).

A backend that writes more than one response for a request (a wrong ``Content-Length``, a body on
a 204 or a HEAD answer, an unsolicited 408 on an idle connection) must not desynchronise the
pool: the connection is closed, never reused, and each client gets the answer to its own request.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.servers import serve_gateway

from .backends import RecordingBackend, Reply, Seen, exchange, json_reply, recording_backend
from .conftest import front

STRAY = b'HTTP/1.1 200 OK\r\ncontent-length: 24\r\n\r\n{"n": 0, "stray": true}\n'


def misbehaving_once(first: bytes) -> Reply:
    """Answer the first request with ``first``, every later one properly."""

    def reply(seen: Seen, number: int) -> bytes:
        return first if number == 1 else json_reply(seen, number)

    return reply


CASES = {
    "two-responses": json_reply(Seen("GET", "/x", [], b"", 1), 1) + STRAY,
    "short-content-length": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
    b'content-length: 24\r\n\r\n{"n": 0, "stray": true}\n',
    "body-on-204": b"HTTP/1.1 204 No Content\r\ncontent-length: 24\r\n\r\n"
    b'{"n": 0, "stray": true}\n',
}


@pytest.fixture
def misbehaving(request: pytest.FixtureRequest) -> Iterator[RecordingBackend]:
    with recording_backend(misbehaving_once(CASES[request.param])) as backend:
        yield backend


def serve(engine: Engine, url: str, transport: str, sqlite_url: str):  # type: ignore[no-untyped-def]
    apply(engine, front(url))
    return serve_gateway(make_gateway(engine, sqlite_url), transport)


@pytest.mark.parametrize("misbehaving", sorted(CASES), indirect=True)
def test_extra_bytes_from_a_backend_never_reach_the_next_client(
    sqlite_engine: Engine, sqlite_url: str, misbehaving: RecordingBackend, transport: str
) -> None:
    with serve(sqlite_engine, misbehaving.url, transport, sqlite_url) as base:
        httpx.get(f"{base}/open/first")
        for n in range(4):
            answer = httpx.get(f"{base}/open/next{n}")
            assert answer.status_code == 200
            assert answer.json()["target"] == f"/next{n}", answer.text
            assert answer.headers.get_list("content-length") == [str(len(answer.content))]


def test_head_answer_with_a_body_does_not_leak(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    head = b'HTTP/1.1 200 OK\r\ncontent-length: 24\r\n\r\n{"n": 0, "stray": true}\n'
    with (
        recording_backend(misbehaving_once(head)) as backend,
        serve(sqlite_engine, backend.url, transport, sqlite_url) as base,
    ):
        assert httpx.head(f"{base}/open/first").status_code == 200
        for n in range(3):
            assert httpx.get(f"{base}/open/next{n}").json()["target"] == f"/next{n}"


def test_unsolicited_bytes_on_an_idle_connection_close_it(
    sqlite_engine: Engine, sqlite_url: str, backend: RecordingBackend, transport: str
) -> None:
    with (
        serve(sqlite_engine, backend.url, transport, sqlite_url) as base,
        httpx.Client() as client,
    ):
        assert client.get(f"{base}/open/warm").status_code == 200
        backend.push(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 7\r\n\r\ntimeout")
        for n in range(3):
            answer = client.get(f"{base}/open/after{n}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["target"] == f"/after{n}"


@pytest.mark.parametrize(
    "framing",
    [
        b"content-length: 5\r\ncontent-length: 6\r\n",
        b"content-length: 5\r\ntransfer-encoding: chunked\r\n",
        b"content-length: 5, 6\r\n",
        b"transfer-encoding: gzip\r\n",
    ],
)
def test_conflicting_backend_framing_is_a_502_for_that_call_only(
    sqlite_engine: Engine, sqlite_url: str, transport: str, framing: bytes
) -> None:
    bad = b"HTTP/1.1 200 OK\r\n" + framing + b"\r\nhello0\r\n\r\n"
    with (
        recording_backend(misbehaving_once(bad)) as backend,
        serve(sqlite_engine, backend.url, transport, sqlite_url) as base,
    ):
        first = httpx.get(f"{base}/open/first")
        assert first.status_code == 502
        assert first.headers["content-type"] == "application/problem+json"
        for n in range(3):
            assert httpx.get(f"{base}/open/next{n}").json()["target"] == f"/next{n}"


def test_pipelined_answers_stay_in_order(gateway_front) -> None:  # type: ignore[no-untyped-def]
    raw = (
        b"".join(b"GET /open/p%d HTTP/1.1\r\nHost: gw\r\n\r\n" % n for n in range(3))
        + b"GET /open/p3 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    answer = exchange(gateway_front.base, raw)
    order = [answer.find(b'"/p%d"' % n) for n in range(4)]
    assert all(i > 0 for i in order) and order == sorted(order), answer
