"""The e-mail verification hook: a real HTTP receiver gets the link; the link verifies."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from .conftest import Portal, csrf_of
from .mailbox import Mailbox, running_mailbox

pytestmark = pytest.mark.anyio


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    with running_mailbox() as box:
        yield box


@pytest.fixture
def portal_env(mailbox: tuple[Mailbox, str]) -> dict[str, str]:
    return {
        "TOLLWAY_PORTAL_VERIFICATION_HOOK": mailbox[1],
        "TOLLWAY_PORTAL_VERIFICATION_REQUIRED": "true",
    }


async def subscribe(portal: Portal) -> int:
    page = await portal.form("/portal/account", "/portal/subscribe", product="starter")
    return page.status_code


async def test_only_verified_developers_subscribe(
    portal: Portal, mailbox: tuple[Mailbox, str]
) -> None:
    box, _ = mailbox
    await portal.register("new@example.com")
    await portal.signup("new@example.com")  # the same address again: no second mail
    [mail] = await box.wait_for(1)
    assert mail["email"] == "new@example.com"
    assert mail["verify_url"].startswith("http://gateway.test/portal/verify?token=")
    assert await subscribe(portal) == 400  # not verified yet
    tampered = await portal.client.get(mail["verify_url"][:-3] + "abc")
    assert tampered.status_code == 400
    verified = await portal.client.get(mail["verify_url"])
    assert verified.status_code == 200 and "verified" in verified.text
    assert await subscribe(portal) == 201
    assert len(box.received) == 1


async def test_password_reset_by_link_works_once(
    portal: Portal, mailbox: tuple[Mailbox, str]
) -> None:
    box, _ = mailbox
    await portal.signup("forgetful@example.com")
    await box.wait_for(1)  # the verification mail
    unknown = await portal.form("/portal/forgot", "/portal/forgot", email="nobody@example.com")
    known = await portal.form("/portal/forgot", "/portal/forgot", email="forgetful@example.com")
    assert unknown.status_code == known.status_code == 200
    assert "reset link is on its way" in unknown.text and "reset link is on its way" in known.text
    mail = (await box.wait_for(2))[1]
    assert (mail["purpose"], mail["email"]) == ("reset", "forgetful@example.com")
    link = mail["reset_url"]
    page = await portal.client.get(link)
    assert page.status_code == 200
    token = link.partition("token=")[2]
    new_password = "Brand-New-Harbour-42"
    done = await portal.client.post(
        "/portal/reset",
        data={"csrf_token": csrf_of(page), "token": unquote(token), "password": new_password},
    )
    assert done.status_code == 200 and "password is changed" in done.text
    assert (await portal.signin("forgetful@example.com")).status_code == 400  # old password
    assert (await portal.signin("forgetful@example.com", new_password)).status_code == 303
    page = await portal.client.get(link)  # the form still shows (a fresh CSRF token), but:
    again = await portal.client.post(
        "/portal/reset",
        data={"csrf_token": csrf_of(page), "token": unquote(token), "password": "Another-Pw-99x"},
    )
    assert again.status_code == 400  # the link died with the old password
    assert len(box.received) == 2  # nothing was sent for the unknown address


async def test_a_password_reset_proves_the_address(
    portal: Portal, mailbox: tuple[Mailbox, str]
) -> None:
    """The reset link reached the mailbox: the account counts as verified from then on."""
    box, _ = mailbox
    await portal.signup("mailbox@example.com")
    await box.wait_for(1)  # the verification mail, never opened
    await portal.form("/portal/forgot", "/portal/forgot", email="mailbox@example.com")
    link = (await box.wait_for(2))[1]["reset_url"]
    page = await portal.client.get(link)
    new_password = "Quiet-Lantern-Orchard-73"
    await portal.client.post(
        "/portal/reset",
        data={
            "csrf_token": csrf_of(page),
            "token": unquote(link.partition("token=")[2]),
            "password": new_password,
        },
    )
    assert (await portal.signin("mailbox@example.com", new_password)).status_code == 303
    assert await subscribe(portal) == 201
