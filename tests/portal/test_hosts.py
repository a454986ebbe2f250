"""Which host names the portal answers to, and the settings that must go together."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from tests.gateway.conftest import SECRET
from tests.servers import run_cli, tollway_env
from tollway.db.session import session_factory
from tollway.errors import UserError
from tollway.portal import create_portal
from tollway.portal.settings import PortalSettings
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.anyio


async def answers(engine: Engine, settings: Settings, base_url: str, accept: str = "*/*") -> int:
    gateway = create_gateway(settings, engine=engine)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        page = await client.get("/portal/signin", headers={"Accept": accept})
    return page.status_code


@pytest.mark.parametrize(
    ("public_url", "allowed", "base_url", "status"),
    [
        (None, "", "http://127.0.0.1:8000", 200),
        (None, "", "http://localhost:8000", 200),
        (None, "", "http://[::1]:8000", 200),
        (None, "", "http://portal.example", 400),
        (None, "portal.example", "http://portal.example", 200),
        ("https://portal.example", "", "http://portal.example:8000", 200),
        ("https://portal.example", "", "http://127.0.0.1:8000", 400),
        ("https://portal.example", "portal.internal", "http://portal.internal", 200),
    ],
)
async def test_the_portal_answers_only_to_its_host_names(
    sqlite_engine: Engine,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    public_url: str | None,
    allowed: str,
    base_url: str,
    status: int,
) -> None:
    monkeypatch.setenv("TOLLWAY_PORTAL_ALLOWED_HOSTS", allowed)
    settings = Settings(database_url=sqlite_url, secret_key=SECRET, public_url=public_url)  # type: ignore[arg-type]
    assert await answers(sqlite_engine, settings, base_url) == status


async def test_a_refused_host_gets_a_page_in_a_browser(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=sqlite_engine)
    transport = httpx.ASGITransport(app=gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as client:
        page = await client.get("/portal/signin", headers={"Accept": "text/html"})
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")
    assert "answers only to its own host names" in page.text


def test_e_mailed_links_need_a_public_url(sqlite_engine: Engine, sqlite_url: str) -> None:
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    hooked = PortalSettings(verification_hook="https://mail.example/send")
    with pytest.raises(UserError, match="set TOLLWAY_PUBLIC_URL"):
        create_portal(settings, session_factory(sqlite_engine), portal_settings=hooked)


def test_serve_refuses_to_start_with_a_hook_but_no_public_url(sqlite_url: str) -> None:
    env = tollway_env(sqlite_url, TOLLWAY_PORTAL_VERIFICATION_HOOK="https://mail.example/send")
    result = run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 1
    assert "set TOLLWAY_PUBLIC_URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [("portal.example", "is not an http"), ("https://portal.example/?a=1", "only scheme")],
)
def test_a_bad_public_url_says_what_to_fix(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(public_url=value)
