"""The portal in a real headless Chromium: sign up, subscribe, copy the key, call the API,
see the call in the usage chart. A screenshot of each page goes to test-artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import Engine, func, select

from tests.conftest import REQUIRE_SERVICES
from tests.gateway.conftest import SECRET, apply
from tests.portal.conftest import ADMIN_EMAIL, PASSWORD, PORTAL_CONFIG
from tests.portal.token_provider import CLIENT_ID, CLIENT_SECRET, Account, token_provider
from tests.servers import serve_in_thread
from tollway.db.models import Api, Usage, UserRole
from tollway.db.session import session_factory, transaction
from tollway.services import users
from tollway.services.passwords import hash_password
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("TOLLWAY_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        if REQUIRE_SERVICES:
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def base_url(sqlite_engine: Engine, sqlite_url: str) -> Iterator[str]:
    apply(sqlite_engine, PORTAL_CONFIG)
    with transaction(session_factory(sqlite_engine)) as session:
        users.create_user(
            session, ADMIN_EMAIL, role=UserRole.admin, password_hash=hash_password(PASSWORD)
        )
    settings = Settings(
        database_url=sqlite_url,
        secret_key=SECRET,  # type: ignore[arg-type]
        refresh_interval=0.2,
        usage_flush_interval=0.2,
    )
    with serve_in_thread(create_gateway(settings, engine=sqlite_engine), lifespan="on") as url:
        yield url


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def call_until_admitted(url: str, key: str) -> httpx.Response:
    """The gateway learns of a new key at its next poll (0.2 s here); wait for that."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(url, headers={"X-API-Key": key})
        if response.status_code != 401 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_sign_up_subscribe_copy_key_call_api_and_see_usage(browser: Browser, base_url: str) -> None:
    context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = context.new_page()

    page.goto("/portal/")
    expect(page.get_by_role("heading", name="Names")).to_be_visible()
    shot(page, "01-catalogue")

    page.get_by_role("link", name="Sign up").click()
    page.get_by_label("Name").fill("Browser Developer")
    page.get_by_label("E-mail").fill("browser@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "02-sign-up")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("status")).to_contain_text("sign in below")

    page.get_by_label("Password").fill(PASSWORD)
    shot(page, "03-sign-in")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_label("Signed in as")).to_have_text("Browser Developer")

    page.get_by_role("link", name="Account").click()
    page.get_by_label("Product").select_option("starter")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.get_by_role("button", name="Copy").first.click()
    expect(page.locator(".copied").first).to_have_text("Copied")
    key = page.evaluate("navigator.clipboard.readText()")
    assert key == page.get_by_label("Primary key").input_value()
    assert key.startswith("tw_")
    shot(page, "04-account-new-keys")

    response = call_until_admitted(f"{base_url}/names/generate_name", key)
    assert response.status_code == 200

    page.get_by_role("link", name="Account").click()
    assert key not in page.content()  # shown once only
    shot(page, "05-account")
    page.get_by_role("link", name="Usage of subscription").click()
    for _ in range(50):  # usage reaches the store at the gateway's next flush (0.2 s here)
        if "1 call in this period" in page.content():
            break
        page.wait_for_timeout(100)
        page.reload()
    expect(page.get_by_text("1 call in this period")).to_be_visible()
    chart = page.get_by_role("img", name="Chart of calls per hour")
    expect(chart).to_be_visible()
    # decode() waits for the SVG to load and rejects if it cannot be shown
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    shot(page, "06-usage")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    context.close()


def test_admin_pages_in_the_browser(browser: Browser, base_url: str) -> None:
    context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto("/portal/admin")
    expect(page).to_have_url(f"{base_url}/portal/signin?next_url=%2Fportal%2Fadmin")
    page.get_by_label("E-mail").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Administration")).to_be_visible()
    shot(page, "07-admin")
    context.close()


ALLOWED_TENANT = "11111111-1111-4111-8111-111111111111"
OTHER_TENANT = "22222222-2222-4222-8222-222222222222"
ENTRA_ACCOUNTS = {
    "Ada (Contoso, allowed tenant)": Account(
        "pairwise-ada",
        {
            "oid": "0a0a0a0a-0000-4000-8000-00000000000a",
            "email": "ada@contoso.example",
            "name": "Ada Contoso",
        },
        tenant=ALLOWED_TENANT,
    ),
    "Eve (another tenant)": Account(
        "pairwise-eve",
        {
            "oid": "0e0e0e0e-0000-4000-8000-00000000000e",
            "email": "ada@contoso.example",
            "xms_edov": True,
            "name": "Eve Elsewhere",
        },
        tenant=OTHER_TENANT,
    ),
}


@pytest.fixture
def entra_url(
    sqlite_engine: Engine, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The portal with a multi-tenant Entra-style provider that admits one tenant."""
    apply(sqlite_engine, PORTAL_CONFIG)
    with token_provider(ENTRA_ACCOUNTS) as entra:
        provider = {
            "name": "microsoft",
            "kind": "entra",
            "tenant": "organizations",
            "authority": entra.base,
            "allowed_tenants": [ALLOWED_TENANT],
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        monkeypatch.setenv("TOLLWAY_PORTAL_OIDC_PROVIDERS", json.dumps([provider]))
        settings = Settings(
            database_url=sqlite_url,
            secret_key=SECRET,  # type: ignore[arg-type]
            refresh_interval=0.2,
        )
        with serve_in_thread(create_gateway(settings, engine=sqlite_engine), lifespan="on") as url:
            yield url


def test_entra_multi_tenant_sign_in_admits_the_allowed_tenant_only(
    browser: Browser, entra_url: str
) -> None:
    context = browser.new_context(base_url=entra_url, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto("/portal/account")
    page.get_by_role("link", name="Sign in with Microsoft").click()
    expect(page.get_by_role("heading", name="Pick an account")).to_be_visible()
    page.get_by_role("button", name="Eve (another tenant)").click()
    expect(page.get_by_role("alert")).to_contain_text("may not sign in to this portal")
    expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    shot(page, "08-entra-refused-tenant")

    page.get_by_role("link", name="Try signing in again").click()
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.get_by_role("button", name="Ada (Contoso, allowed tenant)").click()
    expect(page.get_by_label("Signed in as")).to_have_text("Ada Contoso")
    shot(page, "09-entra-allowed-tenant")
    context.close()


def test_sign_out_everywhere_in_the_browser(browser: Browser, base_url: str) -> None:
    laptop = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 800})
    phone = browser.new_context(base_url=base_url, user_agent="Phone Browser")
    pages = []
    for context in (laptop, phone):
        page = context.new_page()
        page.goto("/portal/account")
        page.get_by_label("E-mail").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("heading", name="Where you are signed in")).to_be_visible()
        pages.append(page)
    pages[0].reload()
    expect(pages[0].get_by_text("Phone Browser")).to_be_visible()
    expect(pages[0].get_by_text("(this browser)")).to_be_visible()
    shot(pages[0], "08-account-sessions")
    pages[0].get_by_role("button", name="Sign out everywhere").click()
    pages[1].reload()
    expect(pages[1]).to_have_url(re.compile(r"/portal/signin\?next_url="))
    laptop.close()
    phone.close()


def test_usage_and_admin_analytics_pages_after_real_calls(
    browser: Browser, base_url: str, sqlite_engine: Engine
) -> None:
    context = browser.new_context(  # the pages' own scripts off: everything is plain HTML
        base_url=base_url,
        viewport={"width": 1100, "height": 800},
        accept_downloads=True,
        java_script_enabled=False,
    )
    page = context.new_page()
    page.goto("/portal/signin")
    page.get_by_label("E-mail").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("link", name="Account").click()
    page.get_by_label("Product").select_option("starter")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    key = page.get_by_label("Primary key").input_value()

    assert call_until_admitted(f"{base_url}/names/generate_name", key).status_code == 200
    headers = {"X-API-Key": key}
    assert httpx.get(f"{base_url}/names/generate_name", headers=headers).status_code == 200
    assert httpx.get(f"{base_url}/echo/hello", headers=headers).status_code == 200
    missing = httpx.get(f"{base_url}/names/generate_name?starts_with=1", headers=headers)
    assert missing.status_code == 404

    page.get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Usage of subscription").click()
    for _ in range(50):  # usage reaches the store at the gateway's next flush (0.2 s here)
        if "4 calls in this period" in page.content():
            break
        page.wait_for_timeout(100)
        page.reload()
    expect(page.get_by_text("4 calls in this period")).to_be_visible()
    expect(page.get_by_text("25.0 %").first).to_be_visible()  # the 404 out of four calls
    page.get_by_role("link", name="Last hour").click()
    expect(page).to_have_url(re.compile(r"period=1h"))
    chart = page.get_by_role("img", name="Chart of calls per minute")
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    by_api = page.get_by_role("table", name="Calls per API")
    expect(by_api.get_by_role("row", name="names")).to_contain_text("3")
    shot(page, "10-usage-analytics")

    page.get_by_label("API").select_option("echo")
    page.get_by_role("button", name="Show").click()  # a plain GET form: no JavaScript needed
    expect(page.get_by_text("1 call in this period")).to_be_visible()
    page.get_by_label("API").select_option("")
    page.get_by_role("button", name="Show").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download these rows as CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-1h.csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    from_csv = {(r["api"], int(r["calls_2xx"]), int(r["calls_4xx"])) for r in rows}
    with sqlite_engine.connect() as connection:
        stored = connection.execute(
            select(Api.name, Usage.status_class, func.sum(Usage.calls))
            .join(Api, Api.id == Usage.api_id)
            .where(Usage.subscription_id != 0)  # (not the 401s before the key was known)
            .group_by(Api.name, Usage.status_class)
        ).all()
        everyone = connection.execute(select(func.sum(Usage.calls))).scalar_one()
    by_api_class = {(name, status_class): int(calls) for name, status_class, calls in stored}
    assert by_api_class == {("names", 2): 2, ("names", 4): 1, ("echo", 2): 1}
    assert from_csv == {
        (name, by_api_class.get((name, 2), 0), by_api_class.get((name, 4), 0))
        for name in ("names", "echo")
    }

    page.get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Traffic analytics").click()
    expect(page.get_by_role("heading", name="Traffic analytics")).to_be_visible()
    expect(page.get_by_text(f"{everyone} calls in this period")).to_be_visible()  # all traffic
    top = page.get_by_role("table", name="Developers with the most calls")
    expect(top.get_by_role("row", name=ADMIN_EMAIL)).to_contain_text("4")
    chart = page.get_by_role("img", name="Chart of calls per hour")
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    page.get_by_role("table", name="Calls per product").get_by_role("link", name="starter").click()
    expect(page).to_have_url(re.compile(r"product=starter"))
    expect(page.get_by_text("4 calls in this period")).to_be_visible()
    chart = page.get_by_role("img", name="Chart of calls per hour")
    assert chart.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    shot(page, "11-admin-analytics")
    context.close()
