"""A gateway over a config with policies, over real sockets on both transports (``served``) or
driven in-process where a test needs it (``running``); its store on memory or Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..gateway.conftest import SECRET, apply
from ..gateway.test_usage import usage_rows
from ..servers import serve_gateway

ECHO = {"app": "tollway.samples.echo:app"}


def config(api_policies: list[Any], **more: Any) -> dict[str, Any]:
    """One keyed API ``/echo`` and one open API ``/open`` on the echo backend."""
    base: dict[str, Any] = {
        "backends": {"echo": ECHO},
        "apis": {
            "echo": {"path": "/echo", "backend": "echo", "policies": api_policies},
            "open": {
                "path": "/open",
                "backend": "echo",
                "subscription_required": False,
                "policies": more.pop("open_policies", []),
            },
        },
        "products": {"starter": {"apis": ["echo", "open"]}},
    }
    for section, value in more.items():
        if isinstance(value, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **value}
        else:
            base[section] = value
    return base


def subscribe(engine: Engine, email: str = "dev@example.com", product: str = "starter") -> Any:
    with transaction(session_factory(engine)) as session:
        user = users.find_user(session, email) or users.create_user(session, email)
        return subscriptions.create_subscription(
            session, user, subscriptions.get_product(session, product)
        )


def build(
    engine: Engine,
    database_url: str,
    cfg: dict[str, Any],
    clock: Callable[[], float] | None,
    **settings: Any,
) -> Gateway:
    """Apply ``cfg`` to the store and compose a gateway over it (not started)."""
    apply(engine, cfg)
    options = {"database_url": database_url, "secret_key": SECRET, **settings}
    kwargs: dict[str, Any] = {"engine": engine}
    if clock is not None:
        kwargs["clock"] = clock  # (read in the server's thread: a test moves it between calls)
    return create_gateway(Settings(**options), **kwargs)


Served = Callable[..., AbstractAsyncContextManager[tuple[Gateway, httpx.AsyncClient]]]


@pytest.fixture
def served(transport: str, echo_url: str, asgi_api_calls: list[str]) -> Served:
    """``served(engine, database_url, cfg, clock=..., **settings)``: like ``running`` but over
    real sockets on 127.0.0.1, on both transports; the client's address is 127.0.0.1. On the
    fast transport it also checks that no call was handed over to the ASGI transport."""
    return partial(serving, transport, echo_url, asgi_api_calls)


@asynccontextmanager
async def serving(
    transport: str,
    echo_url: str,
    handed_over: list[str],
    engine: Engine,
    database_url: str,
    cfg: dict[str, Any],
    *,
    clock: Callable[[], float] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """The same config with its echo backend over a socket; the gateway served on ``transport``."""
    backends = {
        name: {"url": echo_url} if backend == ECHO else backend
        for name, backend in cfg["backends"].items()
    }
    gateway = build(engine, database_url, {**cfg, "backends": backends}, clock, **settings)
    with serve_gateway(gateway, transport) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            yield gateway, client
    if transport == "fast":
        assert handed_over == [], "the fast transport handed these calls to the ASGI transport"


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    # A fresh instant per test keeps Redis counters of different runs apart.
    return Clock(4e9 + uuid.uuid4().int % 10**8 * 10.0)  # (year < 2300)


def calls(engine: Engine) -> dict[tuple[int, str, int], int]:
    """Calls in the usage rows by (subscription id, 0 for none; API; status class)."""
    return {key: totals[0] for key, totals in usage_rows(engine).items()}
