"""Gateways over real sockets, on both transports: in front of a recording backend
(``gateway_front``) or of the echo backend (``open_gateway``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.proofs.conftest import SECRET, apply, make_gateway, subscribe
from tests.servers import serve_gateway
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from . import rawhttp
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


GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def open_gateway(
    sqlite_engine: Engine, sqlite_url: str, echo_url: str, transport: str
) -> GatewayFactory:
    """``open_gateway(policies, **settings)``: serve an open API ``/open`` on the echo backend
    with these API policies; yields the gateway's base URL."""

    @contextmanager
    def start(policies: list[dict[str, Any]], **settings: Any) -> Iterator[str]:
        config = {
            "backends": {"echo": {"url": echo_url}},
            "apis": {
                "open": {
                    "path": "/open",
                    "backend": "echo",
                    "subscription_required": False,
                    "policies": policies,
                },
            },
        }
        apply(sqlite_engine, config)
        options = {"database_url": sqlite_url, "secret_key": SECRET, **settings}
        gateway = create_gateway(Settings(**options), engine=sqlite_engine)
        with serve_gateway(gateway, transport) as base:
            yield base

    return start


@pytest.fixture
def gateway_url(
    sqlite_engine: Engine, sqlite_url: str, echo_url: str, transport: str
) -> Iterator[str]:
    """The open API ``/open`` on the echo backend (for raw-socket tests: ``rawhttp``)."""
    with rawhttp.open_gateway(sqlite_engine, sqlite_url, echo_url, transport) as base:
        yield base
