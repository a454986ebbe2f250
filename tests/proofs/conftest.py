"""Helpers for the proofs: apply a config to a fresh store, subscribe, run a gateway."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine

from tollway.config.apply import apply_config
from tollway.config.model import TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.session import session_factory, transaction
from tollway.gateway.app import Gateway, create_gateway
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.types import ASGIApp

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


@contextmanager
def serve_like_tollway(app: ASGIApp, http: Any) -> Iterator[str]:
    """Serve ``app`` in a thread with the uvicorn options ``tollway serve`` uses; yield its URL.

    Unlike ``tests.servers.serve_in_thread``, uvicorn's own proxy-header handling is off (as in
    ``tollway.server.serve``): left on, uvicorn believes X-Forwarded-For from 127.0.0.1 before
    Tollway's trusted-proxy rules ever see the request.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http=http,
        lifespan="on",
        proxy_headers=False,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def longest_retry_after(calls: int, window: float) -> int:
    """The most a sliding-window limit may honestly ask a client to wait.

    The sliding window weighs the previous window's calls as if spread evenly over it, so after
    a burst early in a window one call fits again ``window / calls`` seconds *after* that window
    ends: up to ``window + window / calls`` seconds from the refusal, never more.
    """
    return math.ceil(window + window / calls)
