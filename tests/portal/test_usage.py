"""The usage page: calls by status class per hour and per day, as a chart and a table."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.portal.conftest import Portal
from tests.portal.test_subscriptions import subscribe
from tollway.db.models import Usage
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
    assert re.findall(r"<td>(\d+)</td>", row) == ["0", "1", "0", "2", "0"]
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
    assert "3 of 5 calls left" in page.text and "daily" in page.text
    others, _ = await subscribe(portal)
    page = await portal.client.get(f"/portal/subscriptions/{others}/usage")
    assert "No call quota applies" in page.text
