"""A gateway over real sockets in front of a recording backend, on both transports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway, subscribe
from tests.servers import serve_gateway

from .backends import RecordingBackend, recording_backend


def front(url: str, **backend: Any) -> dict[str, Any]:
    """APIs in front of one backend: public, keyed, and one public operation only."""
    return {
        "backends": {"rec": {"url": url, "read_timeout": 2.0, **backend}},
        "apis": {
            "open": {"path": "/open", "backend": "rec", "subscription_required": False},
            "keyed": {"path": "/keyed", "backend": "rec"},
            "docsonly": {
                "path": "/one",
                "backend": "rec",
                "subscription_required": False,
                "operations": ["GET /docs"],
            },
        },
        "products": {"starter": {"apis": ["keyed"]}},
    }


@dataclass
class Front:
    """A gateway URL, the backend behind it, and a valid key for ``/keyed``."""

    base: str
    backend: RecordingBackend
    key: str


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    with recording_backend() as running:
        yield running


@pytest.fixture
def gateway_front(
    sqlite_engine: Engine, sqlite_url: str, backend: RecordingBackend, transport: str
) -> Iterator[Front]:
    apply(sqlite_engine, front(backend.url))
    key = subscribe(sqlite_engine, "starter")
    gateway = make_gateway(sqlite_engine, sqlite_url)
    with serve_gateway(gateway, transport) as base:
        yield Front(base, backend, key)
