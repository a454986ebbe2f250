"""Sign-in through a real OpenID Connect provider (oidc-provider on loopback), end to end."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import Engine

from tests.gateway.conftest import SECRET, apply
from tests.portal.conftest import PASSWORD, PORTAL_CONFIG, Portal
from tests.portal.oidc_provider import CLIENT_ID, CLIENT_SECRET, oidc_provider
from tests.servers import free_port
from tollway.db.session import session_factory, transaction
from tollway.portal import create_portal
from tollway.portal.settings import OidcProvider, PortalSettings
from tollway.services import users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.anyio

CALLBACK = "http://gateway.test/portal/oidc/test/callback"
Rewrite = Callable[[str], str]


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider(CALLBACK) as url:
        yield url


@pytest.fixture
def clock_offset() -> float:
    """Seconds the portal's clock runs ahead of the real one (parametrize to change)."""
    return 0.0


@pytest.fixture
def provider_issuer(issuer: str) -> str:
    return issuer


@pytest.fixture
def provider_options() -> dict[str, object]:
    """Extra OidcProvider fields (parametrize to change)."""
    return {}


@pytest.fixture
async def oidc_portal(
    engine: Engine,
    portal_settings: Settings,
    provider_issuer: str,
    clock_offset: float,
    provider_options: dict[str, object],
) -> AsyncIterator[Portal]:
    apply(engine, PORTAL_CONFIG)
    gateway = create_gateway(portal_settings, engine=engine)
    provider = OidcProvider(
        name="test",
        title="Test IdP",
        issuer=provider_issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
        **provider_options,  # type: ignore[arg-type]
    )
    gateway.mount(
        "/portal",
        create_portal(
            portal_settings,
            gateway.sessions,
            portal_settings=PortalSettings(oidc_providers=[provider]),
            clock=lambda: time.time() + clock_offset,
        ),
    )
    await gateway.startup()
    mounts = {"http://gateway.test": httpx.ASGITransport(app=gateway)}
    async with httpx.AsyncClient(mounts=mounts, base_url="http://gateway.test") as client:
        yield Portal(gateway, client, session_factory(engine))
    await gateway.shutdown()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def walk(
    client: httpx.AsyncClient, url: str, login: str = "alice", rewrite: Rewrite = str
) -> httpx.Response:
    """Follow redirects and fill in the provider's login and consent forms, like a browser.

    ``rewrite`` may change each redirect target (to play an attacker in the middle).
    """
    response = await client.get(url)
    for _ in range(20):
        if response.is_redirect:
            target = rewrite(urljoin(str(response.url), response.headers["location"]))
            response = await client.get(target)
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        if response.url.host != "127.0.0.1" or form is None:
            return response
        fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', response.text))
        if 'name="login"' in response.text:
            fields.update(login=login, password="any")
        response = await client.post(urljoin(str(response.url), form.group(1)), data=fields)
    raise AssertionError("sign-in did not finish within 20 steps")


async def signed_in_as(portal: Portal) -> str | None:
    page = await portal.client.get("/portal/")
    match = re.search(r'aria-label="Signed in as">([^<]+)<', page.text)
    return match.group(1) if match else None


async def test_sign_in_with_the_provider_creates_the_developer_and_returns_to_next_url(
    oidc_portal: Portal,
) -> None:
    start = await oidc_portal.client.get("/portal/account")
    signin = await oidc_portal.client.get(start.headers["location"])
    button = re.search(r'href="(/portal/oidc/test/start\?[^"]+)"', signin.text)
    assert button and "Sign in with Test IdP" in signin.text
    landed = await walk(oidc_portal.client, button.group(1).replace("&amp;", "&"))
    assert landed.status_code == 200
    assert landed.url.path == "/portal/account"
    assert await signed_in_as(oidc_portal) == "Alice Example"


def verify_address(portal: Portal, email: str) -> None:
    """What opening the sign-up verification link does."""
    with transaction(portal.sessions) as session:
        user = users.get_user(session, email)
        assert users.mark_email_verified(session, user.id, user.email)


@pytest.mark.parametrize("provider_options", [{"link_existing_accounts": True}])
async def test_a_provider_allowed_to_link_joins_a_verified_account(oidc_portal: Portal) -> None:
    await oidc_portal.register("bob@example.com")
    await oidc_portal.form("/portal/account", "/portal/subscribe", product="starter")
    await oidc_portal.form("/portal/", "/portal/signout")
    verify_address(oidc_portal, "bob@example.com")
    await walk(oidc_portal.client, "/portal/oidc/test/start?next_url=/portal/account", "bob")
    account = await oidc_portal.client.get("/portal/account")
    assert "Bob Example" not in account.text  # the existing account keeps its own name
    assert "bob@example.com" in account.text and "#1" in account.text
    # The owner proved the mailbox before: the password stays a way in.
    await oidc_portal.form("/portal/", "/portal/signout")
    assert (await oidc_portal.signin("bob@example.com", PASSWORD)).status_code == 303


async def test_an_existing_account_is_not_linked_by_default(oidc_portal: Portal) -> None:
    await oidc_portal.register("bob@example.com")
    await oidc_portal.form("/portal/", "/portal/signout")
    verify_address(oidc_portal, "bob@example.com")
    page = await walk(oidc_portal.client, "/portal/oidc/test/start", "bob")
    assert page.status_code == 400 and "Sign in the way you did before" in page.text
    assert await signed_in_as(oidc_portal) is None


async def test_an_unverified_email_is_refused(oidc_portal: Portal) -> None:
    page = await walk(oidc_portal.client, "/portal/oidc/test/start", "mallory")
    assert page.status_code == 400 and "did not confirm a verified e-mail" in page.text
    assert await signed_in_as(oidc_portal) is None


def tamper_callback(name: str, value: str) -> Rewrite:
    return lambda url: with_query(url, **{name: value}) if url.startswith(CALLBACK) else url


def tamper_authorize(name: str, value: str) -> Rewrite:
    return lambda url: with_query(url, **{name: value}) if "/auth?" in url else url


@pytest.mark.parametrize(
    ("rewrite", "message"),
    [
        (tamper_callback("state", "forged-state"), "state mismatch"),
        (tamper_authorize("nonce", "attacker-nonce"), "nonce does not match"),
        (tamper_callback("code", "stolen-code"), "did not accept the sign-in code"),
    ],
    ids=["tampered-state", "wrong-nonce", "bad-code"],
)
async def test_a_tampered_flow_shows_an_error_and_signs_nobody_in(
    oidc_portal: Portal, rewrite: Rewrite, message: str
) -> None:
    page = await walk(oidc_portal.client, "/portal/oidc/test/start", rewrite=rewrite)
    assert page.status_code == 400
    assert "Sign-in failed" in page.text and message in page.text
    assert await signed_in_as(oidc_portal) is None


@pytest.mark.parametrize("clock_offset", [3600.0])
async def test_an_expired_id_token_is_refused(oidc_portal: Portal) -> None:
    page = await walk(oidc_portal.client, "/portal/oidc/test/start")
    assert page.status_code == 400 and "it has expired" in page.text
    assert await signed_in_as(oidc_portal) is None


@pytest.mark.parametrize("provider_issuer", [f"http://127.0.0.1:{free_port()}"], ids=["down"])
async def test_a_provider_that_is_down_gets_a_clear_error_page(oidc_portal: Portal) -> None:
    page = await walk(oidc_portal.client, "/portal/oidc/test/start")
    assert page.status_code == 502
    assert "Could not reach Test IdP to sign in." in page.text
    assert await signed_in_as(oidc_portal) is None


async def test_a_callback_cannot_be_replayed(oidc_portal: Portal) -> None:
    seen: list[str] = []

    def remember(url: str) -> str:
        if url.startswith(CALLBACK):
            seen.append(url)
        return url

    await walk(oidc_portal.client, "/portal/oidc/test/start", rewrite=remember)
    await oidc_portal.form("/portal/", "/portal/signout")
    page = await oidc_portal.client.get(seen[0])
    assert page.status_code == 400 and "not started here" in page.text
    assert await signed_in_as(oidc_portal) is None


async def test_behind_a_tls_terminating_proxy_the_redirect_uri_is_https(
    engine: Engine, database_url: str, issuer: str
) -> None:
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET,  # type: ignore[arg-type]
        trusted_proxies=["10.0.0.0/8"],
    )
    gateway = create_gateway(settings, engine=engine)
    provider = OidcProvider(name="test", issuer=issuer, client_id=CLIENT_ID)
    portal_settings = PortalSettings(oidc_providers=[provider], allowed_hosts=["portal.example"])
    gateway.mount(
        "/portal", create_portal(settings, gateway.sessions, portal_settings=portal_settings)
    )
    proxy = httpx.ASGITransport(app=gateway, client=("10.0.0.2", 40000))  # TLS ends at the proxy
    async with httpx.AsyncClient(transport=proxy, base_url="http://portal.example") as client:
        start = await client.get(
            "/portal/oidc/test/start",
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"},
        )
    assert start.status_code == 303
    query = dict(parse_qsl(urlsplit(start.headers["location"]).query))
    assert query["redirect_uri"] == "https://portal.example/portal/oidc/test/callback"
    assert "; secure" in start.headers["set-cookie"].lower()
