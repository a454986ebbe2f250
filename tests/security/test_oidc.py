"""Sign-in with OpenID Connect: account takeovers and provider misbehaviour kept out (issue 16).

The real ``oidc-provider`` plays the victim's provider where the attack is about the portal's
own accounts; a token-crafting provider on loopback (tests/portal/token_provider.py) plays
providers that say unusual things: Microsoft Entra tenants, several audiences, string booleans,
another issuer, rotated or unknown keys, a trickle of bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from tests.gateway.conftest import apply
from tests.portal.conftest import (  # noqa: F401 (fixtures)
    ADMIN_EMAIL,
    PORTAL_CONFIG,
    Portal,
    cheap_argon2,
    keys_on,
    portal_settings,
)
from tests.portal.oidc_provider import CLIENT_ID as REAL_CLIENT_ID
from tests.portal.oidc_provider import CLIENT_SECRET as REAL_CLIENT_SECRET
from tests.portal.oidc_provider import oidc_provider
from tests.portal.test_oidc import CALLBACK, walk
from tests.portal.token_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    Account,
    TokenProvider,
    signing_key,
    token_provider,
)
from tollway.db.models import UserIdentity
from tollway.db.session import session_factory, transaction
from tollway.portal import create_portal
from tollway.portal.settings import OidcProvider, PortalSettings
from tollway.services import users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.anyio

ALLOWED = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
ACCOUNTS = {
    "alice": Account("alice-1", {"email": "alice@example.com", "email_verified": True}),
    "admin": Account("admin-1", {"email": ADMIN_EMAIL, "email_verified": True}),
    "unsure": Account("unsure-1", {"email": "unsure@example.com", "email_verified": False}),
    "quoted": Account("quoted-1", {"email": "quoted@example.com", "email_verified": "true"}),
    "quoted-no": Account("quoted-2", {"email": "qno@example.com", "email_verified": "false"}),
    "ada": Account(
        "pairwise-ada",
        {"oid": "0a0a0a0a-0000-4000-8000-00000000000a", "email": "ada@contoso.example"},
        tenant=ALLOWED,
    ),
    "eve": Account(  # another tenant's admin gave Eve Ada's address (nOAuth)
        "pairwise-eve",
        {"oid": "0e0e0e0e-0000-4000-8000-00000000000e", "email": "ada@contoso.example"},
        tenant=OTHER,
    ),
    "erin": Account(
        "pairwise-erin",
        {
            "oid": "0f0f0f0f-0000-4000-8000-00000000000f",
            "email": "erin@fabrikam.example",
            "xms_edov": True,
        },
        tenant=OTHER,
    ),
    "eve-admin": Account(
        "pairwise-eve-admin",
        {"oid": "0d0d0d0d-0000-4000-8000-00000000000d", "email": ADMIN_EMAIL, "xms_edov": True},
        tenant=OTHER,
    ),
}


@pytest.fixture
def settings(portal_settings: Settings) -> Settings:  # noqa: F811 (the portal tests' fixture)
    return portal_settings


@pytest.fixture
def crafted() -> Iterator[TokenProvider]:
    with token_provider(dict(ACCOUNTS)) as provider:
        yield provider


@pytest.fixture(scope="module")
def real_issuer() -> Iterator[str]:
    with oidc_provider(CALLBACK) as url:
        yield url


def generic(provider: TokenProvider, name: str = "corp", **fields: Any) -> OidcProvider:
    return OidcProvider(
        name=name, issuer=provider.base, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **fields
    )


def entra(provider: TokenProvider, tenant: str = "common", **fields: Any) -> OidcProvider:
    return OidcProvider(
        name="microsoft",
        kind="entra",
        tenant=tenant,
        authority=provider.base,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,  # type: ignore[arg-type]
        **fields,
    )


def browser(portal: Portal) -> httpx.AsyncClient:
    """Another browser on the same portal (its own cookies)."""
    mounts = {"http://gateway.test": httpx.ASGITransport(app=portal.gateway)}
    return httpx.AsyncClient(mounts=mounts, base_url="http://gateway.test")


@asynccontextmanager
async def portal_with(
    engine: Engine,
    settings: Settings,
    *providers: OidcProvider,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Portal]:
    apply(engine, PORTAL_CONFIG)
    gateway = create_gateway(settings, engine=engine)
    config = PortalSettings(oidc_providers=list(providers))
    gateway.mount(
        "/portal", create_portal(settings, gateway.sessions, portal_settings=config, clock=clock)
    )
    await gateway.startup()
    portal = Portal(gateway, httpx.AsyncClient(), session_factory(engine))
    async with browser(portal) as client:
        portal.client = client
        yield portal
    await gateway.shutdown()


async def who(client: httpx.AsyncClient) -> str | None:
    """The name or e-mail the portal shows as signed in, or None."""
    page = await client.get("/portal/")
    match = re.search(r'aria-label="Signed in as">([^<]+)<', page.text)
    return match.group(1) if match else None


async def sign_in(
    client: httpx.AsyncClient, crafted: TokenProvider, login: str, provider: str = "corp"
) -> httpx.Response:
    crafted.next_login = login
    return await walk(client, f"/portal/oidc/{provider}/start")


def identities_of(portal: Portal, email: str) -> list[tuple[str | None, str]]:
    with transaction(portal.sessions) as session:
        user = users.get_user(session, email)
        rows = session.scalars(select(UserIdentity).where(UserIdentity.user_id == user.id))
        return [(row.issuer, row.subject) for row in rows]


# High 1 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "message"),
    [(False, "Sign in the way you did before"), (True, "its address was never verified")],
    ids=["linking-off", "linking-on"],
)
async def test_pre_registering_the_victims_address_does_not_capture_their_sign_in(
    engine: Engine, settings: Settings, real_issuer: str, link: bool, message: str
) -> None:
    provider = OidcProvider(
        name="test",
        issuer=real_issuer,
        client_id=REAL_CLIENT_ID,
        client_secret=REAL_CLIENT_SECRET,  # type: ignore[arg-type]
        **({"link_existing_accounts": True} if link else {}),  # type: ignore[arg-type]
    )
    async with portal_with(engine, settings, provider) as attacker:
        await attacker.register("bob@example.com")  # Bob's address, never verified
        created = await attacker.form("/portal/account", "/portal/subscribe", product="starter")
        key = keys_on(created)["primary"]
        async with browser(attacker) as victim:
            page = await walk(victim, "/portal/oidc/test/start?next_url=/portal/account", "bob")
            assert page.status_code == 400 and message in page.text
            assert await who(victim) is None
            assert "#1" not in (await victim.get("/portal/account")).text
        # The attacker's account never gains Bob's identity, so Bob never lands in it later.
        assert identities_of(attacker, "bob@example.com") == []
        assert await attacker.api(key) == 200  # only ever the attacker's own subscription


# Medium 4 ---------------------------------------------------------------------------------------


async def test_a_second_provider_does_not_silently_take_over_an_account(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    with token_provider(dict(ACCOUNTS)) as other:
        providers = (generic(crafted), generic(other, "other"))
        async with portal_with(engine, settings, *providers) as portal:
            await sign_in(portal.client, crafted, "alice")
            assert await who(portal.client) == "alice@example.com"
            async with browser(portal) as intruder:
                page = await sign_in(intruder, other, "alice", "other")
                assert page.status_code == 400 and "already exists" in page.text
                assert await who(intruder) is None
            assert identities_of(portal, "alice@example.com") == [(crafted.base, "alice-1")]


@pytest.mark.parametrize("link", [False, True], ids=["linking-off", "linking-on"])
async def test_a_provider_cannot_take_over_an_admin_account(
    engine: Engine, settings: Settings, crafted: TokenProvider, link: bool
) -> None:
    options = {"link_existing_accounts": True} if link else {}
    async with portal_with(engine, settings, generic(crafted, **options)) as portal:
        portal.make_admin()
        with transaction(portal.sessions) as session:
            admin = users.get_user(session, ADMIN_EMAIL)
            users.mark_email_verified(session, admin.id, admin.email)
        page = await sign_in(portal.client, crafted, "admin")
        assert page.status_code == 400
        assert await who(portal.client) is None
        assert (await portal.client.get("/portal/admin")).status_code == 303


# Medium 3 and the string booleans ---------------------------------------------------------------


async def test_trust_email_does_not_override_an_explicit_email_verified_false(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, generic(crafted, trust_email=True)) as portal:
        page = await sign_in(portal.client, crafted, "unsure")
        assert page.status_code == 400 and "did not confirm a verified e-mail" in page.text
        assert await who(portal.client) is None


async def test_email_verified_sent_as_a_string_is_read_for_its_value(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, generic(crafted, trust_email=True)) as portal:
        refused = await sign_in(portal.client, crafted, "quoted-no")  # "false": no
        assert refused.status_code == 400
        await sign_in(portal.client, crafted, "quoted")  # "true": yes
        assert await who(portal.client) == "quoted@example.com"


# High 2: Microsoft Entra ID ---------------------------------------------------------------------


async def test_entra_refuses_a_tenant_outside_the_allow_list(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, entra(crafted, allowed_tenants=[ALLOWED])) as portal:
        page = await sign_in(portal.client, crafted, "eve", "microsoft")
        assert page.status_code == 400 and "may not sign in to this portal" in page.text
        assert await who(portal.client) is None
        await sign_in(portal.client, crafted, "ada", "microsoft")  # works out of the box
        assert await who(portal.client) == "ada@contoso.example"
        assert identities_of(portal, "ada@contoso.example") == [
            (f"{crafted.base}/{ALLOWED}/v2.0", ACCOUNTS["ada"].claims["oid"])
        ]


async def test_entra_any_tenant_needs_the_verified_domain_signal(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, entra(crafted)) as portal:
        page = await sign_in(portal.client, crafted, "eve", "microsoft")  # nOAuth: no xms_edov
        assert page.status_code == 400 and "did not confirm a verified e-mail" in page.text
        assert await who(portal.client) is None
        await sign_in(portal.client, crafted, "erin", "microsoft")  # xms_edov: true
        assert await who(portal.client) == "erin@fabrikam.example"


async def test_entra_cannot_reach_an_admin_made_with_the_cli(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, entra(crafted, link_existing_accounts=True)) as portal:
        portal.make_admin()
        page = await sign_in(portal.client, crafted, "eve-admin", "microsoft")
        assert page.status_code == 400
        assert (await portal.client.get("/portal/admin")).status_code == 303


async def test_entra_single_tenant_signs_in_and_keeps_other_tenants_out(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, entra(crafted, tenant=ALLOWED)) as portal:
        page = await sign_in(portal.client, crafted, "eve", "microsoft")
        assert page.status_code == 400 and await who(portal.client) is None
        await sign_in(portal.client, crafted, "ada", "microsoft")
        assert await who(portal.client) == "ada@contoso.example"


async def test_entra_users_are_known_by_their_object_id_not_their_address(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, entra(crafted, tenant=ALLOWED)) as portal:
        await sign_in(portal.client, crafted, "ada", "microsoft")
        async with browser(portal) as later:
            crafted.extra_claims = {"email": "ada.lovelace@contoso.example", "sub": "new-app"}
            await sign_in(later, crafted, "ada", "microsoft")
            assert await who(later) == "ada@contoso.example"


# Low --------------------------------------------------------------------------------------------


async def test_a_subject_from_another_issuer_does_not_reach_the_account(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, generic(crafted)) as portal:
        await sign_in(portal.client, crafted, "alice")
    # The operator points the same provider name at another issuer, where "alice-1" is Mallory.
    mallory = {"alice": Account("alice-1", {"email": "m@example.com", "email_verified": True})}
    with token_provider(mallory) as other:
        async with portal_with(engine, settings, generic(other)) as portal:
            await sign_in(portal.client, other, "alice")
            assert await who(portal.client) == "m@example.com"


async def test_an_identity_stored_before_issuers_were_recorded_still_signs_in(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    async with portal_with(engine, settings, generic(crafted)) as portal:
        with transaction(portal.sessions) as session:
            user = users.create_user(session, "old@example.com")
            session.add(UserIdentity(user_id=user.id, provider="corp", subject="alice-1"))
        await sign_in(portal.client, crafted, "alice")
        assert await who(portal.client) == "old@example.com"
        assert identities_of(portal, "old@example.com") == [(crafted.base, "alice-1")]


@pytest.mark.parametrize(
    "claims",
    [{"aud": [CLIENT_ID, "another-client"]}, {"azp": "another-client"}],
    ids=["two-audiences-no-azp", "azp-of-another-client"],
)
async def test_a_token_issued_to_another_client_is_refused(
    engine: Engine, settings: Settings, crafted: TokenProvider, claims: dict[str, Any]
) -> None:
    async with portal_with(engine, settings, generic(crafted)) as portal:
        crafted.extra_claims = claims
        page = await sign_in(portal.client, crafted, "alice")
        assert page.status_code == 400 and "issued to another client" in page.text
        assert await who(portal.client) is None
        crafted.extra_claims = {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}
        await sign_in(portal.client, crafted, "alice")
        assert await who(portal.client) == "alice@example.com"


async def test_a_discovery_document_naming_another_issuer_is_refused(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    crafted.discovery_issuer = "https://evil.example"
    async with portal_with(engine, settings, generic(crafted)) as portal:
        page = await sign_in(portal.client, crafted, "alice")
        assert page.status_code == 502 and "names another issuer" in page.text
        assert await who(portal.client) is None


async def test_a_provider_that_trickles_bytes_gets_a_total_deadline(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    crafted.trickle_seconds = 6.0  # each byte well within a per-read timeout
    async with portal_with(engine, settings, generic(crafted, timeout=1.0)) as portal:
        page = await portal.client.get("/portal/oidc/corp/start")
        assert page.status_code == 502 and "Could not reach corp" in page.text


async def test_unknown_key_ids_refetch_the_jwks_at_most_once_a_minute(
    engine: Engine, settings: Settings, crafted: TokenProvider
) -> None:
    now = [time.time()]
    async with portal_with(engine, settings, generic(crafted), clock=lambda: now[0]) as portal:
        await sign_in(portal.client, crafted, "alice")  # keys fetched once
        await portal.form("/portal/", "/portal/signout")
        crafted.published = [crafted.key]
        crafted.key = signing_key("forged")  # never published
        for _ in range(3):
            page = await sign_in(portal.client, crafted, "alice")
            assert page.status_code == 400 and "signature is not valid" in page.text
        assert crafted.jwks_fetches == 1
        # The provider rotates its key; a minute later the new key id is fetched and accepted.
        crafted.key = signing_key("k2")
        crafted.published = [crafted.key]
        now[0] += 61
        await sign_in(portal.client, crafted, "alice")
        assert await who(portal.client) == "alice@example.com"
        assert crafted.jwks_fetches == 2
