"""Sign-up, sign-in, sessions and the protections around them."""

from __future__ import annotations

import httpx
import pytest

from tests.portal.conftest import PASSWORD, Portal, csrf_of
from tollway.db.session import transaction
from tollway.services import users

pytestmark = pytest.mark.anyio


async def test_catalogue_lists_published_apis_with_docs_links_and_products(
    portal: Portal,
) -> None:
    page = await portal.client.get("/portal/")
    assert page.status_code == 200
    assert 'href="/docs/names"' in page.text
    assert "Generates &lt;b&gt;names&lt;/b&gt;." in page.text  # auto-escaped
    assert "/hidden" not in page.text
    assert "Gold" in page.text and "needs approval" in page.text


async def test_sign_up_then_sign_in_shows_the_user_and_sign_out_ends_it(portal: Portal) -> None:
    page = await portal.signup("ada@example.com")
    assert "sign in below" in page.text
    response = await portal.signin("ada@example.com")
    assert response.status_code == 303 and response.headers["location"] == "/portal/"
    home = await portal.client.get("/portal/")
    assert "ada@example.com" in home.text and "Sign out" in home.text
    await portal.form("/portal/", "/portal/signout")
    assert (await portal.client.get("/portal/account")).status_code == 303


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 12 characters"),
        ("aaaaaaaaaaaaaaaa", "less predictable"),
        ("mypassword1234567", "less predictable"),
        ("grace.hopper-2026!", "must not contain your e-mail"),
    ],
)
async def test_weak_passwords_are_refused_with_what_to_fix(
    portal: Portal, password: str, message: str
) -> None:
    response = await portal.signup("grace.hopper@example.com", password)
    assert response.status_code == 400
    assert message in response.text
    assert (await portal.signin("grace.hopper@example.com", password)).status_code == 400


async def test_sign_up_with_a_taken_address_looks_the_same_and_changes_nothing(
    portal: Portal,
) -> None:
    first = await portal.signup("taken@example.com")
    second = await portal.signup("taken@example.com", "another long passphrase 42")
    assert first.status_code == second.status_code == 200
    assert first.text.replace(csrf_of(first), "") == second.text.replace(csrf_of(second), "")
    assert (
        await portal.signin("taken@example.com", "another long passphrase 42")
    ).status_code == 400
    assert (await portal.signin("taken@example.com")).status_code == 303


async def test_failed_sign_in_does_not_reveal_whether_the_account_exists(portal: Portal) -> None:
    await portal.signup("real@example.com")
    wrong_password = await portal.signin("real@example.com", "not the password at all")
    no_account = await portal.signin("ghost@example.com", "not the password at all")
    assert wrong_password.status_code == no_account.status_code == 400
    assert "The e-mail or password is not right" in wrong_password.text
    assert "The e-mail or password is not right" in no_account.text


async def test_protected_page_sends_to_sign_in_and_back_after(portal: Portal) -> None:
    await portal.signup("back@example.com")
    response = await portal.client.get("/portal/account?tab=keys")
    assert response.status_code == 303
    assert (
        response.headers["location"] == "/portal/signin?next_url=%2Fportal%2Faccount%3Ftab%3Dkeys"
    )
    signin_page = await portal.client.get(response.headers["location"])
    assert 'name="next_url" value="/portal/account?tab=keys"' in signin_page.text
    done = await portal.signin("back@example.com", next_url="/portal/account?tab=keys")
    assert done.headers["location"] == "/portal/account?tab=keys"
    assert (await portal.client.get(done.headers["location"])).status_code == 200


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)", "evil"],
)
async def test_next_url_never_leaves_the_site(portal: Portal, next_url: str) -> None:
    await portal.signup("safe@example.com")
    response = await portal.signin("safe@example.com", next_url=next_url)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/"


async def test_forms_without_the_csrf_token_are_refused(portal: Portal) -> None:
    await portal.register("csrf@example.com")
    for data in ({}, {"csrf_token": "forged"}):
        response = await portal.client.post(
            "/portal/subscribe", data={"product": "starter", **data}
        )
        assert response.status_code == 403
        assert "not sent from this site" in response.text
    account = await portal.client.get("/portal/account")
    assert "You have no subscriptions yet" in account.text
    signin = await portal.client.post(
        "/portal/signin", data={"email": "csrf@example.com", "password": PASSWORD}
    )
    assert signin.status_code == 403


async def test_signing_in_rotates_the_session(portal: Portal) -> None:
    await portal.signup("fixed@example.com")
    await portal.register("planter@example.com")  # a session the attacker knows the cookie of
    planted = portal.client.cookies["tollway_portal"]
    planted_form = portal.client.cookies["tollway_portal_form"]
    await portal.signin("fixed@example.com")
    assert portal.client.cookies["tollway_portal"] != planted
    assert portal.client.cookies["tollway_portal_form"] != planted_form  # a new CSRF token
    # The cookie an attacker planted before the sign-in does not carry the sign-in.
    portal.client.cookies.clear()
    portal.client.cookies.set("tollway_portal", planted, domain="gateway.test", path="/portal")
    assert (await portal.client.get("/portal/account")).status_code == 303


async def test_session_cookie_flags_over_http_and_https(portal: Portal) -> None:
    page = await portal.client.get("/portal/signin")
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/portal" in cookie
    assert "secure" not in cookie
    transport = httpx.ASGITransport(app=portal.gateway)
    async with httpx.AsyncClient(transport=transport, base_url="https://gateway.test") as https:
        assert "secure" in (await https.get("/portal/signin")).headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "portal_env",
    [
        {
            "TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_ACCOUNT": "2",
            "TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_IP": "4",
        }
    ],
)
async def test_sign_in_attempts_are_limited_per_account_and_per_address(portal: Portal) -> None:
    await portal.signup("target@example.com")
    await portal.signup("other@example.com")
    for _ in range(2):
        assert (await portal.signin("target@example.com", "wrong guess, again")).status_code == 400
    refused = await portal.signin("target@example.com")  # even the right password
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert (await portal.signin("other@example.com")).status_code == 303
    for n in range(2):
        await portal.signin(f"guess{n}@example.com", "wrong guess, again")
    assert (await portal.signin("other@example.com")).status_code == 429


@pytest.mark.parametrize("portal_env", [{"TOLLWAY_PORTAL_SIGNUPS_PER_IP": "3"}])
async def test_sign_ups_per_address_are_limited(portal: Portal) -> None:
    answers = [(await portal.signup(f"bot{n}@example.com")).status_code for n in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = await portal.signup("human@example.com")
    assert refused.status_code == 429 and "Too many requests" in refused.text
    with transaction(portal.sessions) as session:
        assert users.find_user(session, "bot3@example.com") is None  # nothing was created
