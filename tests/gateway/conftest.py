"""A gateway over a migrated store: over real sockets on both transports (``served``, for
gateway behaviour) or in-process through httpx.ASGITransport (``harness``, for Tollway's own
pages, which are always on the ASGI path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tollway.config.apply import apply_config
from tollway.config.model import TollwayConfig
from tollway.crypto import SecretBox
from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.services import subscriptions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..servers import serve_gateway

SECRET = "test-secret-key-0123456789"

# In-process ``app:`` backends, as the in-process ``harness`` uses them (the docs' try-it-out goes
# through one); ``served`` swaps them for the same samples over sockets (``over_sockets``).
BASE_CONFIG: dict[str, Any] = {
    "backends": {
        "names": {"app": "tollway.samples.names:app"},
        "echo": {"app": "tollway.samples.echo:app"},
    },
    "apis": {
        "names": {"path": "/names", "backend": "names", "title": "Names"},
        "echo": {"path": "/echo", "backend": "echo"},
        "open": {"path": "/open", "backend": "echo", "subscription_required": False},
        "other": {"path": "/other", "backend": "echo"},
    },
    "products": {
        "starter": {"apis": ["names", "echo", "open"]},
        "other-only": {"apis": ["other"]},
    },
}


def apply(engine: Engine, config: dict[str, Any]) -> None:
    apply_config(
        session_factory(engine),
        TollwayConfig.model_validate(config),
        secret_box=SecretBox(SECRET),
    )


@dataclass
class Harness:
    gateway: Gateway
    client: httpx.AsyncClient
    sessions: sessionmaker[Session]

    def subscribe(self, email: str = "dev@example.com", product: str = "starter") -> Any:
        with transaction(self.sessions) as session:
            user = users.find_user(session, email) or users.create_user(session, email)
            return subscriptions.create_subscription(
                session, user, subscriptions.get_product(session, product)
            )

    async def refresh(self) -> None:
        """What the background poll does every refresh_interval, done now."""
        await self.gateway.refresh()


@pytest.fixture
def gateway_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=SECRET)  # type: ignore[arg-type]


@pytest.fixture
async def harness(engine: Engine, gateway_settings: Settings) -> AsyncIterator[Harness]:
    """BASE_CONFIG's gateway in-process, for Tollway's own pages (health, docs): always on the
    ASGI path, so neither transport is skipped. Gateway behaviour uses ``served``."""
    apply(engine, BASE_CONFIG)
    gateway = create_gateway(gateway_settings, engine=engine)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Harness(gateway, client, session_factory(engine))
    await gateway.shutdown()


def over_sockets(config: dict[str, Any], names_url: str, echo_url: str) -> dict[str, Any]:
    """``config`` with its in-process samples replaced by the same samples over real sockets
    (an ``app:`` backend always takes the ASGI transport, so it would not test the fast one)."""
    urls = {"tollway.samples.names:app": names_url, "tollway.samples.echo:app": echo_url}
    backends = {
        name: {"url": urls[backend["app"]]} if backend.get("app") in urls else backend
        for name, backend in config["backends"].items()
    }
    return {**config, "backends": backends}


@dataclass
class Served:
    """A gateway served on 127.0.0.1 by a server thread, and a client for it."""

    gateway: Gateway
    client: httpx.AsyncClient
    sessions: sessionmaker[Session]
    loop: asyncio.AbstractEventLoop  # the server thread's: the gateway's tasks and locks live there
    names_url: str  # the samples' sockets, for a test that applies a config of its own
    echo_url: str

    def subscribe(self, email: str = "dev@example.com", product: str = "starter") -> Any:
        with transaction(self.sessions) as session:
            user = users.find_user(session, email) or users.create_user(session, email)
            return subscriptions.create_subscription(
                session, user, subscriptions.get_product(session, product)
            )

    async def in_server(self, call: Callable[[], Awaitable[None]]) -> None:
        """Run ``call()`` on the server's event loop, as the gateway's own tasks do."""

        async def run() -> None:
            await call()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    async def refresh(self) -> None:
        """What the background poll does every refresh_interval, done now."""
        await self.in_server(self.gateway.refresh)

    async def flush_usage(self) -> None:
        """What the background flush does every usage_flush_interval, done now."""
        await self.in_server(self.gateway.flush_usage)

    async def counted(self, calls: int) -> None:
        """Wait until ``calls`` calls are counted in the gateway's memory, not yet written (the
        server counts a call once its response is sent: the client may see the response first)."""
        deadline = time.monotonic() + 5
        while sum(row[0] for row in list(self.gateway.usage.rows.values())) < calls:
            assert time.monotonic() < deadline, f"the gateway did not count {calls} calls"
            await asyncio.sleep(0.01)


@contextmanager
def serving(gateway: Gateway, transport: str) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """Serve ``gateway`` on ``transport``; yield its base URL and the server's event loop."""
    loops: list[asyncio.AbstractEventLoop] = []
    startup = gateway.startup

    async def recording_startup() -> None:
        loops.append(asyncio.get_running_loop())
        await startup()

    gateway.startup = recording_startup  # type: ignore[method-assign]
    with serve_gateway(gateway, transport) as base:
        yield base, loops[0]


@pytest.fixture
async def served(
    engine: Engine,
    gateway_settings: Settings,
    transport: str,
    names_url: str,
    echo_url: str,
    asgi_api_calls: list[str],
) -> AsyncIterator[Served]:
    """BASE_CONFIG with its samples over sockets, the gateway served on both transports (the
    client's address is 127.0.0.1). On the fast transport it also checks that no call was
    handed over to the ASGI transport."""
    apply(engine, over_sockets(BASE_CONFIG, names_url, echo_url))
    gateway_settings.usage_flush_interval = 3600  # usage is written when a test says so
    gateway = create_gateway(gateway_settings, engine=engine)
    with serving(gateway, transport) as (base, loop):
        async with httpx.AsyncClient(base_url=base) as client:
            yield Served(gateway, client, session_factory(engine), loop, names_url, echo_url)
    if transport == "fast":
        assert asgi_api_calls == [], "the fast transport handed these calls to the ASGI transport"
