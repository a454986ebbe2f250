"""Helpers for the proofs: apply a config to a fresh store, subscribe, run a gateway."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import Engine

from tollway.config.apply import apply_config
from tollway.config.model import TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

SECRET = "test-secret-key-0123456789"


def apply(engine: Engine, config: TollwayConfig | dict[str, Any]) -> None:
    """What ``tollway apply`` does, on ``engine``'s store."""
    model = config if isinstance(config, TollwayConfig) else TollwayConfig.model_validate(config)
    apply_config(session_factory(engine), model, secret_box=SecretBox(SECRET))


def subscribe(engine: Engine, product: str, email: str = "dev@example.com") -> str:
    """A new subscription to ``product``; returns its primary key."""
    with transaction(session_factory(engine)) as session:
        user = users.find_user(session, email) or users.create_user(session, email)
        created = subscriptions.create_subscription(
            session, user, subscriptions.get_product(session, product)
        )
        return str(created.primary)


def settings(database_url: str, **extra: Any) -> Settings:
    return Settings(database_url=database_url, secret_key=SECRET, **extra)  # type: ignore[arg-type]


@asynccontextmanager
async def in_process(
    gateway: Gateway, peer: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway started, and a client that calls it without a socket from ``peer``."""
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway, client=(peer, 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield client
    finally:
        await gateway.shutdown()


def make_gateway(engine: Engine, database_url: str, **extra: Any) -> Gateway:
    return create_gateway(settings(database_url, **extra), engine=engine)


def longest_retry_after(calls: int, window: float) -> int:
    """The most a sliding-window limit may honestly ask a client to wait.

    The sliding window weighs the previous window's calls as if spread evenly over it, so after
    a burst early in a window one call fits again ``window / calls`` seconds *after* that window
    ends: up to ``window + window / calls`` seconds from the refusal, never more.
    """
    return math.ceil(window + window / calls)
