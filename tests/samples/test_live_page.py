"""The demo's live page in a real headless Chromium: the ticker arrives through the gateway over
a WebSocket and as Server-Sent Events, the key travelling in the query string (browsers cannot
set headers on either). A screenshot goes to test-artifacts/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import Engine

from tests.gateway.conftest import SECRET
from tests.portal.test_browser import browser, shot  # noqa: F401 (browser: the fixture)
from tests.servers import serve_gateway
from tollway.crypto import SecretBox
from tollway.demo.setup import prepare_demo
from tollway.settings import Settings
from tollway.site.compose import create_gateway

pytestmark = pytest.mark.slow


def test_the_demo_live_page_shows_the_ticker_through_the_gateway(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    sqlite_engine: Engine,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # demo backends may keep files in the working directory
    demo = prepare_demo(sqlite_engine, SecretBox(SECRET))
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    with serve_gateway(create_gateway(settings, engine=sqlite_engine), "fast") as base:
        page = browser.new_page()
        try:
            page.goto(f"{base}/live/?subscription-key={demo.key}")
            expect(page.locator("#ws-state")).to_have_text("open", timeout=15_000)
            expect(page.locator("#ws li").nth(1)).to_contain_text('"tick": 2', timeout=15_000)
            expect(page.locator("#sse li").nth(1)).to_contain_text('"tick": 2', timeout=15_000)
            shot(page, "demo-live")
        finally:
            page.close()
