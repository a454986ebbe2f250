"""The e-mail verification hook: a real HTTP receiver gets the link; the link verifies."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tollway.types import Receive, Scope, Send

from ..servers import serve_in_thread
from .conftest import Portal

pytestmark = pytest.mark.anyio


class Mailbox:
    """Stands in for the mail sender the hook would normally call."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(json.loads(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.received) < count:
            assert time.monotonic() < deadline, "the hook was not called"
            await anyio.sleep(0.02)  # the hook is sent from this event loop, in the background
        return self.received


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    with serve_in_thread(box) as base:
        yield box, f"{base}/send-verification"


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
