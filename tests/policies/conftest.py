"""A gateway over a config with policies, driven in-process (and its store on memory or Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import Engine

from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..gateway.conftest import SECRET, apply

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


@asynccontextmanager
async def running(
    engine: Engine,
    database_url: str,
    cfg: dict[str, Any],
    *,
    client_ip: str = "203.0.113.7",
    clock: Callable[[], float] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    apply(engine, cfg)
    options = {"database_url": database_url, "secret_key": SECRET, **settings}
    kwargs: dict[str, Any] = {"engine": engine}
    if clock is not None:
        kwargs["clock"] = clock
    gateway = create_gateway(Settings(**options), **kwargs)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway, client=(client_ip, 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield gateway, client
    finally:
        await gateway.shutdown()
        await gateway.counters.aclose()
