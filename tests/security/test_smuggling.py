"""Request smuggling: one client request becomes exactly one well-framed backend request.

The campaign's attack (issue 9, item 1): ``Connection: Content-Length`` made the gateway drop
the length while still streaming the body, so the backend read the body as a second request on
the pooled connection — past the key check, the operation allow-list and the base path.
"""

from __future__ import annotations

import pytest

from .backends import exchange
from .conftest import Front

SMUGGLED = b"GET /admin/secrets HTTP/1.1\r\nHost: backend\r\n\r\n"


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


@pytest.mark.parametrize(
    "connection",
    ["Content-Length", "content-length, keep-alive", "Host", "Transfer-Encoding", "close, Host"],
)
def test_connection_header_cannot_remove_framing(gateway_front: Front, connection: str) -> None:
    raw = request(
        f"GET /one/docs HTTP/1.1\nHost: gw\nConnection: {connection}\n"
        f"Content-Length: {len(SMUGGLED)}\n",
        SMUGGLED,
    )
    answer = exchange(gateway_front.base, raw)
    seen = gateway_front.backend.requests
    assert [r.target for r in seen] == ["/docs"], answer
    assert seen[0].body == SMUGGLED
    assert seen[0].header("content-length") == [str(len(SMUGGLED))]
    assert answer.count(b"HTTP/1.1 ") == 1


def test_smuggled_request_never_reaches_a_keyed_path(gateway_front: Front) -> None:
    """The body is data: no key-less call reaches anything behind ``/keyed``."""
    hidden = b"GET /keyed-only HTTP/1.1\r\nHost: backend\r\n\r\n"
    raw = request(
        f"POST /open/x HTTP/1.1\nHost: gw\nConnection: Content-Length\n"
        f"Content-Length: {len(hidden)}\n",
        hidden,
    )
    exchange(gateway_front.base, raw)
    assert [r.target for r in gateway_front.backend.requests] == ["/x"]


def test_next_client_gets_its_own_answer_after_a_smuggling_attempt(gateway_front: Front) -> None:
    raw = request(
        f"GET /open/attacker HTTP/1.1\nHost: gw\nConnection: Content-Length\n"
        f"Content-Length: {len(SMUGGLED)}\n",
        SMUGGLED,
    )
    exchange(gateway_front.base, raw)
    for n in range(3):
        answer = exchange(
            gateway_front.base,
            request(f"GET /open/victim{n} HTTP/1.1\nHost: gw\nConnection: close\n"),
        )
        assert f'"target": "/victim{n}"'.encode() in answer, answer
    assert len(gateway_front.backend.requests) == 4


def test_chunked_body_is_reframed_by_the_gateway(gateway_front: Front) -> None:
    raw = request(
        "POST /open/up HTTP/1.1\nHost: gw\nTransfer-Encoding: chunked\n"
        "Connection: Transfer-Encoding, close\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    answer = exchange(gateway_front.base, raw)
    seen = gateway_front.backend.requests
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert [(r.target, r.body) for r in seen] == [("/up", b"hello")]
