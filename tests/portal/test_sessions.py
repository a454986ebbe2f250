"""Server-side sessions (issue 16, item 5): lifetimes, your list of sessions, sign out
everywhere, and administrators ending a user's sessions."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from sqlalchemy import select

from tests.portal.conftest import ADMIN_EMAIL, Portal, csrf_of
from tests.servers import free_port
from tollway.db.models import PortalSession
from tollway.db.session import transaction

pytestmark = pytest.mark.anyio

MINUTE = 60.0


async def signed_in(portal: Portal) -> bool:
    page = await portal.client.get("/portal/account")
    assert page.status_code in (200, 303)
    return page.status_code == 200


def end_button_near(page: str, text: str) -> str:
    """The "End session" form action on the row of the sessions table that shows ``text``."""
    for row in page.split("<tr>"):
        found = re.search(r'action="(/portal/sessions/\d+/end)"', row)
        if text in row and found:
            return found.group(1)
    raise AssertionError(f"no session row shows {text!r}")


async def test_your_sessions_are_listed_and_you_can_end_one(portal: Portal) -> None:
    await portal.signup("dev@example.com")
    laptop, phone = portal.browser("Laptop Browser"), portal.browser("Phone Browser")
    async with laptop.client, phone.client:
        for browser in (laptop, phone):
            assert (await browser.signin("dev@example.com")).status_code == 303
        page = await laptop.client.get("/portal/account")
        assert "Laptop Browser" in page.text and "Phone Browser" in page.text
        row = next(r for r in page.text.split("<tr>") if "Laptop Browser" in r)
        assert "(this browser)" in row
        ended = await laptop.client.post(
            end_button_near(page.text, "Phone Browser"), data={"csrf_token": csrf_of(page)}
        )
        assert ended.status_code == 303
        assert not await signed_in(phone)
        assert await signed_in(laptop)
        assert "Phone Browser" not in (await laptop.client.get("/portal/account")).text


async def test_sign_out_everywhere_ends_every_browsers_session(portal: Portal) -> None:
    await portal.register("dev@example.com")
    other = portal.browser()
    async with other.client:
        await other.signin("dev@example.com")
        page = await portal.client.get("/portal/account")
        assert "Sign out everywhere" in page.text
        await portal.client.post("/portal/signout/everywhere", data={"csrf_token": csrf_of(page)})
        assert not await signed_in(other)
        assert not await signed_in(portal)


async def test_an_admin_signs_a_user_out_everywhere(portal: Portal) -> None:
    await portal.register("dev@example.com")
    portal.make_admin()
    admin = portal.browser("Admin Browser")
    async with admin.client:
        assert (await admin.signin(ADMIN_EMAIL)).status_code == 303
        page = await admin.client.get("/portal/admin")
        action = re.search(r'action="(/portal/admin/users/\d+/sessions/end)"', page.text)
        assert action and "Sign out dev@example.com everywhere" in page.text
        done = await admin.client.post(action.group(1), data={"csrf_token": csrf_of(page)})
        assert done.status_code == 303
        assert not await signed_in(portal)
        assert await signed_in(admin)


async def test_a_session_ends_at_its_absolute_lifetime_however_active(portal: Portal) -> None:
    await portal.register("dev@example.com")
    for _ in range(9):  # a page every 50 minutes for 7.5 hours
        portal.clock.advance(50 * MINUTE)
        assert await signed_in(portal)
    portal.clock.advance(31 * MINUTE)  # 8 hours and a minute after signing in
    assert not await signed_in(portal)


async def test_a_session_ends_after_an_idle_hour(portal: Portal) -> None:
    await portal.register("dev@example.com")
    portal.clock.advance(59 * MINUTE)
    assert await signed_in(portal)  # (a page view: the idle hour starts again)
    portal.clock.advance(61 * MINUTE)
    assert not await signed_in(portal)


@pytest.mark.parametrize(
    "portal_env",
    [
        {
            "TOLLWAY_PORTAL_OIDC_PROVIDERS": json.dumps(
                [{"name": "corp", "issuer": f"http://127.0.0.1:{free_port()}", "client_id": "c"}]
            )
        }
    ],
)
async def test_oidc_start_and_a_bare_callback_do_not_keep_a_session_alive(
    portal: Portal,
) -> None:
    await portal.register("dev@example.com")
    for _ in range(2):
        portal.clock.advance(40 * MINUTE)
        await portal.client.get("/portal/oidc/corp/start")
        await portal.client.get("/portal/oidc/corp/callback")
    # 80 minutes since the last page view: idle, whatever those two endpoints were asked
    assert not await signed_in(portal)


async def test_the_cookie_is_an_opaque_token_of_which_the_store_keeps_a_digest(
    portal: Portal,
) -> None:
    await portal.register("dev@example.com")
    token = portal.client.cookies["tollway_portal"]
    assert len(token) >= 40 and "dev" not in token
    with transaction(portal.sessions) as session:
        [row] = session.scalars(select(PortalSession)).all()
        stored = [str(value) for value in vars(row).values()]
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert not any(token in value for value in stored)
    signin = await portal.signin("dev@example.com")
    lines = signin.headers.get_list("set-cookie")
    cookie = next(line for line in lines if line.startswith("tollway_portal="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/portal" in cookie
