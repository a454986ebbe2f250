"""What the backend is told and what the client is sent back (issue 9, low items).

- ``Forwarded`` and ``X-Real-IP`` are client-address claims: passed on only from a trusted proxy
  (like ``X-Forwarded-For``), so a client cannot make a backend believe it is someone else.
- A backend's redirect to its own URL comes back under the API's prefix on the gateway (nginx's
  ``proxy_redirect default``), never naming the backend's private address.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.servers import serve_gateway

from .backends import Seen, json_reply, recording_backend
from .conftest import Front, front

SPOOF = {"Forwarded": "for=10.9.8.7;proto=https", "X-Real-IP": "10.9.8.7"}


def test_untrusted_clients_cannot_forward_address_claims(gateway_front: Front) -> None:
    assert httpx.get(f"{gateway_front.base}/open/x", headers=SPOOF).status_code == 200
    seen = gateway_front.backend.requests[0]
    assert seen.header("forwarded") == [] and seen.header("x-real-ip") == []
    assert seen.header("x-forwarded-for") == ["127.0.0.1"]


def test_a_trusted_proxy_may_forward_address_claims(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    with recording_backend() as backend:
        apply(sqlite_engine, front(backend.url))
        gateway = make_gateway(sqlite_engine, sqlite_url, trusted_proxies=["127.0.0.1"])
        with serve_gateway(gateway, transport) as base:
            httpx.get(f"{base}/open/x", headers=SPOOF)
    seen = backend.requests[0]
    assert seen.header("forwarded") == [SPOOF["Forwarded"]]
    assert seen.header("x-real-ip") == [SPOOF["X-Real-IP"]]


def redirecting(seen: Seen, number: int) -> bytes:
    """Redirect ``/go?to=PATH`` to the backend's own absolute URL, as frameworks do."""
    if not seen.target.startswith("/base/go"):
        return json_reply(seen, number)
    own = f"http://{seen.header('host')[0]}"
    where = {
        "/base/go?to=own": f"{own}/base/landing?x=1",
        "/base/go?to=root": f"{own}/base",
        "/base/go?to=elsewhere": "https://example.org/base/landing",
        "/base/go?to=sibling": f"{own}/basement/x",
    }[seen.target]
    return (
        b"HTTP/1.1 307 Temporary Redirect\r\nlocation: %b\r\ncontent-length: 0\r\n\r\n"
        % where.encode()
    )


@pytest.fixture
def redirect_base(sqlite_engine: Engine, sqlite_url: str, transport: str) -> Iterator[str]:
    with recording_backend(redirecting) as backend:
        apply(sqlite_engine, front(f"{backend.url}/base"))
        with serve_gateway(make_gateway(sqlite_engine, sqlite_url), transport) as base:
            yield base


@pytest.mark.parametrize(
    ("to", "location"),
    [
        ("own", "/open/landing?x=1"),
        ("root", "/open/"),
        ("elsewhere", "https://example.org/base/landing"),
        ("sibling", None),  # /basement is not below /base: passed on as the backend wrote it
    ],
)
def test_backend_redirects_are_moved_under_the_api_prefix(
    redirect_base: str, to: str, location: str | None
) -> None:
    answer = httpx.get(f"{redirect_base}/open/go?to={to}")
    assert answer.status_code == 307
    if location is None:
        assert answer.headers["location"].endswith("/basement/x")
    else:
        assert answer.headers["location"] == location
