"""Malformed and ambiguous requests are refused as problem+json and the connection closed.

A gateway that guesses how an ambiguous request is framed may read it differently from the
backend behind it (request smuggling, issue 9). Each case is sent as raw bytes on both
transports; the gateway answers it itself and never passes it on.
"""

from __future__ import annotations

import httpx
import pytest

from .rawhttp import exchange

HOST = b"Host: gateway.test\r\n"
CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


def post(*headers: bytes, body: bytes = CHUNKED_BODY) -> bytes:
    return b"POST /open/x HTTP/1.1\r\n" + HOST + b"".join(headers) + b"\r\n" + body


REFUSED = {
    "http11-without-host": (b"GET /open/x HTTP/1.1\r\n\r\n", 400, "malformed-request"),
    "two-hosts": (
        b"GET /open/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        400,
        "malformed-request",
    ),
    "http2-on-http1": (
        b"GET /open/x HTTP/2.0\r\n" + HOST + b"\r\n",
        505,
        "http-version-not-supported",
    ),
    "http12": (b"GET /open/x HTTP/1.2\r\n" + HOST + b"\r\n", 505, "http-version-not-supported"),
    "http09": (b"GET /open/x HTTP/0.9\r\n" + HOST + b"\r\n", 505, "http-version-not-supported"),
    "gzip-then-chunked": (
        post(b"Transfer-Encoding: gzip, chunked\r\n"),
        501,
        "transfer-coding-not-implemented",
    ),
    "chunked-then-gzip": (post(b"Transfer-Encoding: chunked, gzip\r\n"), 400, "malformed-request"),
    "chunked-twice": (post(b"Transfer-Encoding: chunked, chunked\r\n"), 400, "malformed-request"),
    "chunked-on-two-lines": (
        post(b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: chunked\r\n"),
        400,
        "malformed-request",
    ),
    "chunked-on-http10": (
        b"POST /open/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY,
        400,
        "malformed-request",
    ),
    "length-and-chunked": (
        post(b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"),
        400,
        "malformed-request",
    ),
    "chunked-and-length": (
        post(b"Transfer-Encoding: chunked\r\n", b"Content-Length: 5\r\n"),
        400,
        "malformed-request",
    ),
    "two-equal-lengths": (
        post(b"Content-Length: 5\r\n", b"Content-Length: 5\r\n", body=b"hello"),
        400,
        "malformed-request",
    ),
    "two-different-lengths": (
        post(b"Content-Length: 5\r\n", b"Content-Length: 6\r\n", body=b"hello!"),
        400,
        "malformed-request",
    ),
    "length-list": (post(b"Content-Length: 5, 5\r\n", body=b"hello"), 400, "malformed-request"),
    "length-not-a-number": (post(b"Content-Length: abc\r\n", body=b""), 400, "malformed-request"),
    "negative-length": (post(b"Content-Length: -1\r\n", body=b""), 400, "malformed-request"),
    "trace": (b"TRACE /open/x HTTP/1.1\r\n" + HOST + b"\r\n", 405, "method-refused"),
    "connect": (
        b"CONNECT backend.example:443 HTTP/1.1\r\n" + HOST + b"\r\n",
        405,
        "method-refused",
    ),
    "garbage-request-line": (b"GARBAGE\r\n\r\n", 400, "malformed-request"),
    "unknown-method": (b"FOO /open/x HTTP/1.1\r\n" + HOST + b"\r\n", 400, "malformed-request"),
    "bare-lf": (b"GET /open/x HTTP/1.1\nHost: gateway.test\n\n", 400, "malformed-request"),
    "obs-fold": (
        b"GET /open/x HTTP/1.1\r\n" + HOST + b"X-Folded: a\r\n b\r\n\r\n",
        400,
        "malformed-request",
    ),
    "space-before-colon": (
        b"GET /open/x HTTP/1.1\r\nHost : gateway.test\r\n\r\n",
        400,
        "malformed-request",
    ),
    "nul-in-header": (
        b"GET /open/x HTTP/1.1\r\n" + HOST + b"X-Nul: a\x00b\r\n\r\n",
        400,
        "malformed-request",
    ),
    "bad-chunk-size": (
        post(b"Transfer-Encoding: chunked\r\n", body=b"zz\r\nhello\r\n0\r\n\r\n"),
        400,
        "malformed-request",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_malformed_or_ambiguous_request_is_refused_as_problem_and_closed(
    gateway_url: str, case: str
) -> None:
    request, status, slug = REFUSED[case]
    answer = exchange(gateway_url, request)
    assert answer.status == status, answer
    assert answer.problem()["type"] == f"/-/problems/{slug}"
    assert answer.headers["connection"] == "close"
    assert answer.closed
    assert httpx.get(f"{gateway_url}/open/x").status_code == 200  # and the gateway carries on


def test_trace_refusal_says_which_methods_are_allowed(gateway_url: str) -> None:
    answer = exchange(gateway_url, REFUSED["trace"][0])
    assert "TRACE" not in answer.headers["allow"]
    assert "GET" in answer.headers["allow"]


def test_host_is_required_on_http11_only(gateway_url: str) -> None:
    http10 = exchange(gateway_url, b"GET /open/x HTTP/1.0\r\n\r\n")
    http11 = exchange(gateway_url, b"GET /open/x HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert http10.status == 200
    assert http11.status == 400
