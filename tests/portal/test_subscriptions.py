"""Subscribing, keys shown once, regenerating, cancelling, and the admin pages."""

from __future__ import annotations

import logging

import pytest

from tests.portal.conftest import ADMIN_EMAIL, Portal, keys_on

pytestmark = pytest.mark.anyio


async def subscribe(portal: Portal, product: str = "starter") -> tuple[int, dict[str, str]]:
    page = await portal.form("/portal/account", "/portal/subscribe", product=product)
    assert page.status_code == 201, page.text
    keys = keys_on(page)
    number = int(page.text.split("for subscription ", 1)[1].split("<", 1)[0])
    return number, keys


async def test_subscribing_shows_both_keys_once_and_they_work_at_the_gateway(
    portal: Portal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await portal.register()
    _, keys = await subscribe(portal)
    assert set(keys) == {"primary", "secondary"}
    assert await portal.api(keys["primary"]) == 200
    assert await portal.api(keys["secondary"]) == 200
    account = await portal.client.get("/portal/account")
    assert keys["primary"] not in account.text and keys["primary"][:10] in account.text
    assert "active" in account.text
    assert not any(key in caplog.text for key in keys.values())


async def test_regenerating_a_key_replaces_only_that_key(portal: Portal) -> None:
    await portal.register()
    number, keys = await subscribe(portal)
    page = await portal.form(
        "/portal/account", f"/portal/subscriptions/{number}/regenerate", slot="primary"
    )
    new = keys_on(page)
    assert list(new) == ["primary"] and new["primary"] != keys["primary"]
    assert await portal.api(keys["primary"]) == 401
    assert await portal.api(new["primary"]) == 200
    assert await portal.api(keys["secondary"]) == 200


async def test_cancelling_stops_the_keys(portal: Portal) -> None:
    await portal.register()
    number, keys = await subscribe(portal)
    response = await portal.form("/portal/account", f"/portal/subscriptions/{number}/cancel")
    assert response.status_code == 303
    assert "cancelled" in (await portal.client.get("/portal/account")).text
    assert await portal.api(keys["primary"]) == 401


async def test_someone_elses_subscription_is_not_found(portal: Portal) -> None:
    await portal.register("owner@example.com")
    number, _ = await subscribe(portal)
    await portal.form("/portal/", "/portal/signout")
    await portal.register("intruder@example.com")
    for action in ("regenerate", "cancel"):
        response = await portal.form(
            "/portal/account", f"/portal/subscriptions/{number}/{action}", slot="primary"
        )
        assert response.status_code == 404
    assert (await portal.client.get(f"/portal/subscriptions/{number}/usage")).status_code == 404


async def test_unknown_product_gets_a_clear_message(portal: Portal) -> None:
    await portal.register()
    page = await portal.form("/portal/account", "/portal/subscribe", product="platinum")
    assert page.status_code == 404 and "no product named &#39;platinum&#39;" in page.text


async def test_approval_required_product_waits_for_an_admin(portal: Portal) -> None:
    portal.make_admin()
    await portal.register()
    number, keys = await subscribe(portal, "gold")
    assert "waiting for an administrator" in (await portal.client.get("/portal/account")).text
    assert await portal.api(keys["primary"], "/echo/x") == 401
    await portal.form("/portal/", "/portal/signout")
    await portal.signin(ADMIN_EMAIL)
    admin = await portal.client.get("/portal/admin")
    assert f"Approve #{number}" in admin.text
    response = await portal.form(
        "/portal/admin", f"/portal/admin/subscriptions/{number}", action="approve"
    )
    assert response.status_code == 303
    assert await portal.api(keys["primary"], "/echo/x") == 200


async def test_admin_can_reject_suspend_and_activate(portal: Portal) -> None:
    portal.make_admin()
    await portal.register()
    pending, _ = await subscribe(portal, "gold")
    number, keys = await subscribe(portal)
    await portal.form("/portal/", "/portal/signout")
    await portal.signin(ADMIN_EMAIL)
    await portal.form("/portal/admin", f"/portal/admin/subscriptions/{pending}", action="reject")
    await portal.form("/portal/admin", f"/portal/admin/subscriptions/{number}", action="suspend")
    assert await portal.api(keys["primary"]) == 401
    await portal.form("/portal/admin", f"/portal/admin/subscriptions/{number}", action="activate")
    assert await portal.api(keys["primary"]) == 200
    page = await portal.form(
        "/portal/admin", f"/portal/admin/subscriptions/{pending}", action="suspend"
    )
    assert page.status_code == 400 and "rejected; it cannot become suspended" in page.text


async def test_blocking_a_user_disables_their_keys_and_signs_them_out(portal: Portal) -> None:
    portal.make_admin()
    await portal.register("blocked@example.com")
    _, keys = await subscribe(portal)
    developer_cookie = portal.client.cookies["tollway_portal"]
    portal.client.cookies.clear()
    await portal.signin(ADMIN_EMAIL)
    admin = await portal.client.get("/portal/admin")
    user_id = admin.text.split('action="/portal/admin/users/', 1)[1].split('"', 1)[0]
    await portal.form("/portal/admin", f"/portal/admin/users/{user_id}", action="block")
    assert await portal.api(keys["primary"]) == 401
    assert await portal.api(keys["secondary"]) == 401
    admin_cookie = portal.client.cookies["tollway_portal"]
    portal.client.cookies.clear()
    portal.client.cookies.set("tollway_portal", developer_cookie, path="/portal")
    assert (await portal.client.get("/portal/account")).status_code == 303
    assert (await portal.signin("blocked@example.com")).status_code == 400
    portal.client.cookies.set("tollway_portal", admin_cookie, path="/portal")
    await portal.form("/portal/admin", f"/portal/admin/users/{user_id}", action="unblock")
    assert await portal.api(keys["primary"]) == 200


async def test_admin_pages_are_for_admins_only(portal: Portal) -> None:
    await portal.register()
    page = await portal.client.get("/portal/admin")
    assert page.status_code == 403 and "for administrators" in page.text
    response = await portal.form("/portal/account", "/portal/admin/users/1", action="block")
    assert response.status_code == 403
