"""The admin console in a real headless Chromium, with JavaScript off (every form must work
without it): approve a waiting subscription, give it a new key, see both in the audit log;
named values show masked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import Engine

from tests.gateway.conftest import SECRET, apply
from tests.portal.conftest import ADMIN_EMAIL, PASSWORD, PORTAL_CONFIG
from tests.portal.test_browser import browser, shot
from tests.servers import serve_in_thread
from tollway.db.models import SubscriptionState, UserRole
from tollway.db.session import session_factory, transaction
from tollway.services import subscriptions, users
from tollway.services.passwords import hash_password
from tollway.settings import Settings
from tollway.site.compose import create_gateway

__all__ = ["browser"]
pytestmark = pytest.mark.slow

SECRET_VALUE = "console-secret-0042"
CONFIG: dict[str, Any] = {
    **PORTAL_CONFIG,
    "named_values": {"upstream-token": {"value": SECRET_VALUE, "secret": True}},
}


@pytest.fixture
def console(sqlite_engine: Engine, sqlite_url: str) -> Iterator[tuple[str, int]]:
    apply(sqlite_engine, CONFIG)
    with transaction(session_factory(sqlite_engine)) as session:
        users.create_user(
            session, ADMIN_EMAIL, role=UserRole.admin, password_hash=hash_password(PASSWORD)
        )
        developer = users.create_user(session, "waiting@example.com")
        gold = subscriptions.get_product(session, "gold")
        pending = subscriptions.create_subscription(
            session, developer, gold, state=SubscriptionState.submitted
        ).subscription.id
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    gateway = create_gateway(settings, engine=sqlite_engine)
    with serve_in_thread(gateway, lifespan="on") as url:
        yield url, pending


def test_approve_a_subscription_and_see_it_in_the_audit_log(
    browser: Browser, console: tuple[str, int]
) -> None:
    base_url, pending = console
    context = browser.new_context(
        base_url=base_url, java_script_enabled=False, viewport={"width": 1200, "height": 900}
    )
    page = context.new_page()
    page.goto("/portal/admin")
    page.get_by_label("E-mail").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Waiting for approval")).to_be_visible()

    page.get_by_role("button", name=f"Approve #{pending}").click()
    expect(page.get_by_text("No subscriptions are waiting.")).to_be_visible()
    page.get_by_role("button", name=f"New secondary key #{pending}").click()
    key = page.get_by_label("Secondary key").input_value()
    assert re.fullmatch(r"tw_[0-9A-Za-z]{46}", key)
    shot(page, "admin-console-01-approved")

    page.get_by_role("link", name="Audit log").click()
    rows = page.get_by_role("row")
    approve = rows.filter(has_text=f"subscription {pending}").filter(has_text="approve")
    expect(approve).to_contain_text(f"user:{ADMIN_EMAIL}")
    expect(approve).to_contain_text('"state": "active"')
    regenerated = rows.filter(has_text="regenerate-key")
    expect(regenerated).to_contain_text("secondary")
    assert key not in page.content()
    shot(page, "admin-console-02-audit")

    page.get_by_label("Actor").fill("cli")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No changes recorded.")).to_be_visible()

    page.get_by_role("link", name="APIs, products, policies, named values").click()
    named = page.get_by_role("row").filter(has_text="upstream-token")
    expect(named).to_contain_text("<masked>")
    assert SECRET_VALUE not in page.content()
    expect(page.get_by_role("cell", name="/names", exact=True)).to_be_visible()
    shot(page, "admin-console-03-config")
    context.close()
