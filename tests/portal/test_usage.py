"""The usage pages: a subscription's (by status class over time, per API, error rate, latency,
quota, CSV) and the admins' analytics across all traffic."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.portal.conftest import ADMIN_EMAIL, Portal
from tests.portal.test_subscriptions import subscribe
from tollway.db.models import Api, Usage
from tollway.db.session import transaction

pytestmark = pytest.mark.anyio


async def test_calls_through_the_gateway_show_up_by_status_class(portal: Portal) -> None:
    await portal.register()
    number, keys = await subscribe(portal)
    assert await portal.api(keys["primary"]) == 200
    assert await portal.api(keys["primary"], "/names/generate_name?starts_with=1") == 404
    assert await portal.api(keys["primary"], "/other/x") == 403
    await portal.gateway.flush_usage()
    page = await portal.client.get(f"/portal/subscriptions/{number}/usage")
    assert page.status_code == 200
    assert "3 calls in this period" in page.text
    hour = datetime.now(UTC).strftime("%Y-%m-%d %H:00")
    row = page.text.split(f'<th scope="row">{hour}</th>', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r"<td>(\d+)</td>", row) == ["0", "1", "0", "2", "0"]  # 1xx ... 5xx
    assert "<td>66.7 %</td>" in row  # error rate
    assert re.search(r"Latency p95</dt><dd>[\d.]+ m?s</dd>", page.text)
    chart = await portal.client.get(f"/portal/subscriptions/{number}/usage.svg")
    assert chart.headers["content-type"] == "image/svg+xml"
    assert chart.text.lstrip().startswith("<?xml") and "<svg" in chart.text
    assert "4xx" in chart.text and "2xx" in chart.text  # legend


async def test_the_month_view_sums_days_and_ignores_older_usage(portal: Portal) -> None:
    await portal.register()
    number, _ = await subscribe(portal)
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    with transaction(portal.sessions) as session:
        for age, calls in (
            (timedelta(days=2), 7),
            (timedelta(days=2, minutes=1), 5),
            (timedelta(days=45), 100),
        ):
            session.add(
                Usage(
                    subscription_id=number, api_id=1, minute=now - age, status_class=5, calls=calls
                )
            )
    month = await portal.client.get(f"/portal/subscriptions/{number}/usage?span=month")
    assert "12 calls in this period" in month.text
    day = await portal.client.get(f"/portal/subscriptions/{number}/usage")
    assert "0 calls in this period" in day.text
    chart = await portal.client.get(f"/portal/subscriptions/{number}/usage.svg?span=month")
    assert "calls per day, last 30 days" in chart.text


async def test_the_remaining_quota_is_shown(portal: Portal) -> None:
    await portal.register()
    number, keys = await subscribe(portal, "metered")
    assert await portal.api(keys["primary"]) == 200
    assert await portal.api(keys["primary"]) == 200
    await portal.gateway.flush_usage()
    page = await portal.client.get(f"/portal/subscriptions/{number}/usage")
    assert "3 of 5 calls left</strong>: 2 used" in page.text and "daily" in page.text
    others, _ = await subscribe(portal)
    page = await portal.client.get(f"/portal/subscriptions/{others}/usage")
    assert "No call quota applies" in page.text


def usage_rows(portal: Portal, subscription_id: int | None = None) -> dict[tuple[str, int], int]:
    """Calls per (API, status class) in the usage table, for one subscription or all."""
    with transaction(portal.sessions) as session:
        query = select(Api.name, Usage.status_class, Usage.calls, Usage.subscription_id).join(
            Api, Api.id == Usage.api_id
        )
        totals: dict[tuple[str, int], int] = {}
        for api, status_class, calls, sid in session.execute(query):
            if subscription_id is None or sid == subscription_id:
                totals[(api, status_class)] = totals.get((api, status_class), 0) + calls
        return totals


def csv_totals(text: str) -> dict[tuple[str, int], int]:
    totals: dict[tuple[str, int], int] = {}
    for row in csv.DictReader(io.StringIO(text)):
        for status_class in range(1, 6):
            calls = int(row[f"calls_{status_class}xx"])
            if calls:
                key = (row["api"], status_class)
                totals[key] = totals.get(key, 0) + calls
    return totals


async def test_filter_by_api_and_period_and_download_the_rows_as_csv(portal: Portal) -> None:
    await portal.register()
    number, keys = await subscribe(portal)
    assert await portal.api(keys["primary"]) == 200
    assert await portal.api(keys["primary"], "/echo/x") == 200
    assert await portal.api(keys["primary"], "/names/generate_name?starts_with=1") == 404
    await portal.gateway.flush_usage()
    base = f"/portal/subscriptions/{number}"
    page = await portal.client.get(f"{base}/usage?period=1h&api=names")
    assert "2 calls in this period" in page.text and "Calls per minute (UTC)" in page.text
    assert f'src="{base}/usage.svg?period=1h&amp;api=names"' in page.text
    assert "<option selected>names</option>" in page.text
    whole = await portal.client.get(f"{base}/usage?period=7d")
    assert "3 calls in this period" in whole.text
    assert re.search(r'<a href="\?period=7d&amp;api=echo">echo</a></th>\s*<td>1</td>', whole.text)

    download = await portal.client.get(f"{base}/usage.csv?period=30d")
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="usage-subscription-' in download.headers["content-disposition"]
    assert (
        csv_totals(download.text)
        == usage_rows(portal, number)
        == {
            ("names", 2): 1,
            ("names", 4): 1,
            ("echo", 2): 1,
        }
    )
    only_names = await portal.client.get(f"{base}/usage.csv?api=names")
    assert csv_totals(only_names.text) == {("names", 2): 1, ("names", 4): 1}

    assert (await portal.client.get(f"{base}/usage?period=1y")).status_code == 400
    missing = await portal.client.get(f"{base}/usage?api=nope")
    assert missing.status_code == 404 and "No API named &#39;nope&#39;" in missing.text


async def test_someone_elses_usage_is_not_found(portal: Portal) -> None:
    await portal.register("owner@example.com")
    number, _ = await subscribe(portal)
    stranger = portal.browser()
    async with stranger.client:
        await stranger.register("stranger@example.com")
        for path in ("usage", "usage.svg", "usage.csv"):
            page = await stranger.client.get(f"/portal/subscriptions/{number}/{path}")
            assert page.status_code == 404, path
        assert (await stranger.client.get("/portal/admin/analytics")).status_code == 403
        assert (await stranger.client.get("/portal/admin/analytics.csv")).status_code == 403


async def test_admins_see_all_traffic_by_api_product_subscription_and_developer(
    portal: Portal,
) -> None:
    await portal.register("ada@example.com")
    ada, ada_keys = await subscribe(portal)
    metered, metered_keys = await subscribe(portal, "metered")
    assert await portal.api(ada_keys["primary"]) == 200
    assert await portal.api(ada_keys["primary"], "/echo/x") == 200
    assert await portal.api(metered_keys["primary"]) == 200
    assert await portal.api("tw_not_a_key") == 401
    await portal.gateway.flush_usage()
    portal.make_admin()
    admin = portal.browser("Admin Browser")
    async with admin.client:
        assert (await admin.signin(ADMIN_EMAIL)).status_code == 303
        overview = await admin.client.get("/portal/admin")
        assert 'href="/portal/admin/analytics"' in overview.text
        page = await admin.client.get("/portal/admin/analytics?period=1h")
        assert page.status_code == 200
        assert "4 calls in this period" in page.text
        assert "25.0 %" in page.text  # one 401 out of four calls
        section = page.text.split("<h2>By product</h2>", 1)[1].split("<h2>", 1)[0]
        assert re.search(r">starter</a></th>\s*<td>2</td>", section)
        assert re.search(r">metered</a></th>\s*<td>1</td>", section)
        top = page.text.split("<h2>Top consumers</h2>", 1)[1].split("<h2>", 1)[0]
        assert re.search(r"ada@example.com</th>\s*<td>3</td>", top)
        assert f"#{metered} metered (ada@example.com)" in page.text
        assert "no breakdown by operation" in page.text

        mine = await admin.client.get(f"/portal/admin/analytics?subscription={ada}")
        assert "2 calls in this period" in mine.text
        assert "No call quota applies to this subscription" in mine.text
        product = await admin.client.get("/portal/admin/analytics?product=metered")
        assert "1 call in this period" in product.text
        assert "quota" not in product.text.split("<h1>", 1)[1].lower()  # not one subscription
        metered_page = await admin.client.get(f"/portal/admin/analytics?subscription={metered}")
        assert "4 of 5 calls left</strong>: 1 used" in metered_page.text
        chart = await admin.client.get("/portal/admin/analytics.svg?period=30d")
        assert "calls per day, last 30 days" in chart.text
        download = await admin.client.get("/portal/admin/analytics.csv")
        assert csv_totals(download.text) == usage_rows(portal)
        assert sum(csv_totals(download.text).values()) == 4
        bad = await admin.client.get("/portal/admin/analytics?subscription=abc")
        assert bad.status_code == 400 and "give a subscription number" in bad.text
