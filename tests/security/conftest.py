"""A gateway over real sockets in front of the echo backend, on both transports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine

from tollway.gateway.app import create_gateway
from tollway.samples.echo import app as echo_app
from tollway.settings import Settings

from ..gateway.conftest import SECRET, apply
from ..servers import serve_gateway, serve_in_thread

GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """The echo sample over a real socket (it describes what the gateway forwarded)."""
    with serve_in_thread(echo_app) as base:
        yield base


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
