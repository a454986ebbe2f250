"""The gateway with its portal, driven in-process; helpers that act like a browser's forms."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.gateway.conftest import BASE_CONFIG, SECRET, apply
from tollway.db.models import UserRole
from tollway.db.session import session_factory, transaction
from tollway.gateway.exchange.gateway import Gateway
from tollway.services import passwords, users
from tollway.services.passwords import hash_password
from tollway.settings import Settings
from tollway.site.compose import create_gateway

PASSWORD = "correct horse battery staple"
ADMIN_EMAIL = "admin@example.com"

PORTAL_CONFIG: dict[str, Any] = {
    **BASE_CONFIG,
    "apis": {
        **BASE_CONFIG["apis"],
        "names": {
            "path": "/names",
            "backend": "names",
            "title": "Names",
            "description": "Generates <b>names</b>.",
        },
        "hidden": {"path": "/hidden", "backend": "echo", "published": False},
    },
    "products": {
        **BASE_CONFIG["products"],
        "gold": {"apis": ["echo"], "approval_required": True, "title": "Gold"},
        "metered": {
            "apis": ["names"],
            "policies": [{"type": "quota", "calls": 5, "period": "day", "name": "daily"}],
        },
    },
}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    match = CSRF.search(page.text)
    assert match, f"no CSRF token on {page.url}"
    return match.group(1)


def keys_on(page: httpx.Response) -> dict[str, str]:
    """The keys shown once on a page, by slot."""
    found = re.findall(
        r'value="(tw_[0-9A-Za-z]{46})" readonly size="52" data-key-slot="(\w+)"', page.text
    )
    return {slot: key for key, slot in found}


class Clock:
    """Real time plus an offset a test can advance: what the portal times sessions with."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Portal:
    gateway: Gateway
    client: httpx.AsyncClient
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=Clock)

    def browser(self, user_agent: str = "second browser") -> Portal:
        """Another browser (its own cookies) on the same portal; close its ``client``."""
        transport = httpx.ASGITransport(app=self.gateway, client=("203.0.113.10", 50000))
        client = httpx.AsyncClient(
            transport=transport,
            base_url=str(self.client.base_url),
            headers={"User-Agent": user_agent},
        )
        return Portal(self.gateway, client, self.sessions, self.clock)

    async def form(self, page_path: str, target: str, /, **fields: str) -> httpx.Response:
        """Open ``page_path`` and submit a form to ``target`` with its CSRF token."""
        page = await self.client.get(page_path)
        return await self.client.post(target, data={"csrf_token": csrf_of(page), **fields})

    async def signup(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.form("/portal/signup", "/portal/signup", email=email, password=password)

    async def signin(
        self, email: str, password: str = PASSWORD, next_url: str = "/portal/"
    ) -> httpx.Response:
        return await self.form(
            "/portal/signin", "/portal/signin", email=email, password=password, next_url=next_url
        )

    async def register(self, email: str = "dev@example.com") -> None:
        await self.signup(email)
        response = await self.signin(email)
        assert response.status_code == 303, response.text

    def make_admin(self, email: str = ADMIN_EMAIL) -> None:
        with transaction(self.sessions) as session:
            users.create_user(
                session, email, role=UserRole.admin, password_hash=hash_password(PASSWORD)
            )

    async def api(self, key: str, path: str = "/names/generate_name") -> int:
        await self.gateway.refresh()  # what the background poll does every second
        response = await self.client.get(path, headers={"X-API-Key": key})
        return response.status_code


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Real argon2id, with test-sized cost (production keeps pwdlib's recommended cost)."""
    cheap = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    monkeypatch.setattr(passwords, "hasher", lambda: cheap)
    passwords._dummy_hash.cache_clear()
    yield
    passwords._dummy_hash.cache_clear()


@pytest.fixture
def portal_settings(database_url: str) -> Settings:
    # Tests refresh the gateway and flush usage themselves: a background poll or flush racing
    # the test's own could still be applying its result when the test looks.
    return Settings(
        database_url=database_url,
        secret_key=SECRET,  # type: ignore[arg-type]
        public_url="http://gateway.test",  # the portal answers to this host, links point here
        refresh_interval=60,
        usage_flush_interval=3600,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def portal_env() -> dict[str, str]:
    """TOLLWAY_PORTAL_* variables for the portal under test (parametrize to change)."""
    return {}


@pytest.fixture
async def portal(
    engine: Engine,
    portal_settings: Settings,
    portal_env: dict[str, str],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Portal]:
    for name, value in portal_env.items():
        monkeypatch.setenv(name, value)
    apply(engine, PORTAL_CONFIG)
    gateway = create_gateway(portal_settings, engine=engine, clock=clock)
    await gateway.startup()
    transport = httpx.ASGITransport(app=gateway, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Portal(gateway, client, session_factory(engine), clock)
    await gateway.shutdown()
