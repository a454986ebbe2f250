"""A gateway over a migrated store, driven in-process through httpx.ASGITransport."""

from __future__ import annotations

from collections.abc import AsyncIterator
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

SECRET = "test-secret-key-0123456789"

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
    apply(engine, BASE_CONFIG)
    gateway = create_gateway(gateway_settings, engine=engine)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Harness(gateway, client, session_factory(engine))
    await gateway.shutdown()
