"""ip-filter over a real socket: a spoofed X-Forwarded-For from an untrusted peer is ignored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.servers import TRANSPORTS, serve_gateway, serve_in_thread
from tollway.samples.echo import app as echo_app

OFFICE = "203.0.113.0/24"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(echo_app) as base:
        yield base


def filtered_config(upstream: str) -> dict[str, object]:
    """/office admits only the office range; /blocked refuses the loopback peer itself."""
    open_api = {"backend": "echo", "subscription_required": False}
    return {
        "backends": {"echo": {"url": upstream}},
        "apis": {
            "office": {**open_api, "path": "/office", "policies": [
                {"type": "ip-filter", "allow": [OFFICE]}]},
            "blocked": {**open_api, "path": "/blocked", "policies": [
                {"type": "ip-filter", "deny": ["127.0.0.0/8"]}]},
        },
    }  # fmt: skip


def get_from(base: str, path: str, forwarded_for: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"X-Forwarded-For": forwarded_for})


@pytest.mark.parametrize("protocol", TRANSPORTS)
def test_spoofed_forwarded_for_is_still_denied(
    sqlite_engine: Engine, sqlite_url: str, upstream: str, protocol: str
) -> None:
    apply(sqlite_engine, filtered_config(upstream))
    gateway = make_gateway(sqlite_engine, sqlite_url)
    with serve_gateway(gateway, protocol) as base:
        spoof_in = get_from(base, "/office/x", "203.0.113.5")
        spoof_out = get_from(base, "/blocked/x", "198.51.100.9")
    assert spoof_in.status_code == 403
    assert spoof_in.json()["type"] == "/-/problems/ip-forbidden"
    assert spoof_out.status_code == 403


@pytest.mark.parametrize("protocol", TRANSPORTS)
def test_forwarded_for_from_a_trusted_proxy_is_believed(
    sqlite_engine: Engine, sqlite_url: str, upstream: str, protocol: str
) -> None:
    apply(sqlite_engine, filtered_config(upstream))
    gateway = make_gateway(sqlite_engine, sqlite_url, trusted_proxies=["127.0.0.1"])
    with serve_gateway(gateway, protocol) as base:
        office = get_from(base, "/office/x", "203.0.113.5")
        outsider = get_from(base, "/office/x", "198.51.100.9")
        # a client cannot prepend its own hop in front of the proxy's
        prepended = get_from(base, "/office/x", "203.0.113.5, 198.51.100.9")
    assert office.status_code == 200
    assert (outsider.status_code, prepended.status_code) == (403, 403)
