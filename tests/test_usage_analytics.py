"""The numbers behind the usage pages, from real usage rows on SQLite and PostgreSQL: latency
percentiles estimated from buckets, error rates, periods, whole-number chart ticks, breakdowns,
the CSV and quota used vs left."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.gateway.conftest import apply
from tests.portal.conftest import PORTAL_CONFIG
from tollway.db.models import LATENCY_BOUNDS, Api, Product, Usage, latency_bucket
from tollway.db.session import transaction
from tollway.errors import UserError
from tollway.gateway.recording.usage import UsageBuffer, write_usage
from tollway.portal.chart import usage_figure
from tollway.services import subscriptions, users
from tollway.services.usage import (
    BREAKDOWNS,
    PERIODS,
    Scope,
    Stats,
    estimate_percentile,
    integer_ticks,
    period_named,
    quota_status,
    usage_csv,
    usage_report,
)

NOW = datetime(2026, 12, 2, 11, 30, 15)  # naive UTC, like the usage rows
DAY = PERIODS["24h"]


@pytest.fixture
def db(engine: Engine, sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    apply(engine, PORTAL_CONFIG)
    return sessions


def api_id(session: Session, name: str) -> int:
    return session.scalars(select(Api.id).where(Api.name == name)).one()


def add(
    session: Session,
    minute: datetime,
    status_class: int = 2,
    calls: int = 1,
    *,
    subscription: int = 1,
    api: int = 1,
    buckets: dict[int, int] | None = None,
) -> None:
    counts = {f"latency_{i}": n for i, n in (buckets or {}).items()}
    session.add(
        Usage(
            subscription_id=subscription,
            api_id=api,
            minute=minute.replace(second=0),
            status_class=status_class,
            calls=calls,
            bytes_in=10 * calls,
            bytes_out=100 * calls,
            latency_ms=0.0,
            **counts,
        )
    )


def test_percentiles_interpolate_inside_power_of_two_buckets() -> None:
    assert estimate_percentile([0] * 18, 0.5) is None
    hundred_in_4_to_8 = [0] * 18
    hundred_in_4_to_8[4] = 100  # bucket 4 is [4, 8) ms
    assert estimate_percentile(hundred_in_4_to_8, 0.5) == pytest.approx(4 * 2**0.5)
    assert estimate_percentile(hundred_in_4_to_8, 0.99) == pytest.approx(4 * 2**0.99)
    split = [0] * 18
    split[2], split[6] = 50, 50  # half in [1, 2) ms, half in [16, 32) ms
    assert estimate_percentile(split, 0.5) == pytest.approx(2.0)
    assert estimate_percentile(split, 0.95) == pytest.approx(16 * 2**0.9)
    under_half_ms = [10] + [0] * 17
    assert estimate_percentile(under_half_ms, 0.5) == pytest.approx(0.25)
    very_slow = [0] * 17 + [5]
    assert estimate_percentile(very_slow, 0.5) == LATENCY_BOUNDS[-1]  # "at least 32.8 s"


def test_recorded_latencies_give_percentiles_in_the_true_values_bucket(
    db: sessionmaker[Session], engine: Engine
) -> None:
    """Latencies recorded by the gateway's own buffer and upsert (two flushes that add up)."""
    rng = random.Random(12)
    latencies = (
        [rng.uniform(0.2, 4) for _ in range(900)]
        + [rng.uniform(20, 90) for _ in range(90)]
        + [rng.uniform(300, 2500) for _ in range(10)]
    )
    rng.shuffle(latencies)
    buffer = UsageBuffer(clock=lambda: NOW.replace(tzinfo=UTC).timestamp())
    with transaction(db) as session:
        echo = api_id(session, "echo")
    for half in (latencies[:500], latencies[500:]):
        for latency in half:
            buffer.record(7, echo, 200, 10, 100, latency)
        write_usage(engine, buffer.take())
    with transaction(db) as session:
        report = usage_report(session, Scope(subscription_id=7), DAY, NOW)
    stats = report.total
    assert stats.calls == 1000 and sum(stats.buckets) == 1000
    assert stats.mean_ms == pytest.approx(sum(latencies) / 1000)
    ordered = sorted(latencies)
    for q, estimate in ((0.5, stats.p50), (0.95, stats.p95), (0.99, stats.p99)):
        true = ordered[math.ceil(q * len(ordered)) - 1]  # nearest rank
        bucket = latency_bucket(true)
        low = 0.0 if bucket == 0 else LATENCY_BOUNDS[bucket - 1]
        assert estimate is not None and low <= estimate <= 2 * low + (bucket == 0) * 0.5
        assert true / 2 < estimate < true * 2  # the documented precision


def test_error_rate_counts_4xx_and_5xx_and_rows_from_before_buckets_have_no_latency(
    db: sessionmaker[Session],
) -> None:
    with transaction(db) as session:
        add(session, NOW, 2, 7, buckets={3: 7})
        add(session, NOW, 4, 2, buckets={1: 2})
        add(session, NOW - timedelta(hours=1), 5, 1, buckets={12: 1})
        add(session, NOW - timedelta(hours=2), 3, 10)  # recorded before migration 0006
        add(session, NOW, 2, 9, subscription=2)  # someone else's
    with transaction(db) as session:
        report = usage_report(session, Scope(subscription_id=1), DAY, NOW)
    total = report.total
    assert (total.calls, total.errors) == (20, 3)
    assert total.error_rate == pytest.approx(0.15)
    assert total.server_error_rate == pytest.approx(0.05)
    assert sum(total.buckets) == 10  # percentiles come from the calls that have buckets
    latest, previous, older = report.timeline[-1], report.timeline[-2], report.timeline[-3]
    assert latest.error_rate == pytest.approx(2 / 9)
    assert previous.error_rate == 1.0 and previous.p50 == pytest.approx(1024 * 2**0.5)
    assert older.error_rate == 0.0 and older.p50 is None
    assert report.timeline[0].error_rate is None  # no calls: no rate, not 0 %


def test_each_period_counts_its_window_and_nothing_before(db: sessionmaker[Session]) -> None:
    for number, period in enumerate(PERIODS.values(), start=1):  # one subscription each
        with transaction(db) as session:
            report = usage_report(session, Scope(number), period, NOW)
            first = report.starts[0]
            assert len(report.starts) == period.count
            assert report.starts[-1] <= NOW < report.starts[-1] + period.step
            add(session, first, calls=3, subscription=number)  # the window's first minute
            add(session, first - timedelta(minutes=1), calls=100, subscription=number)
            add(session, NOW, calls=4, subscription=number)
        with transaction(db) as session:
            report = usage_report(session, Scope(number), period, NOW)
        assert report.total.calls == 7, period.name
        assert report.timeline[0].calls == 3 and report.timeline[-1].calls == 4
        assert report.calls(2)[0] == 3


def test_unknown_periods_are_refused_with_the_choices() -> None:
    assert period_named(None).name == "24h"
    assert period_named("month").name == "30d"  # links from before keep working
    with pytest.raises(UserError, match="use one of 1h, 24h, 7d, 30d"):
        period_named("1y")


def test_chart_ticks_are_whole_calls(db: sessionmaker[Session]) -> None:
    assert integer_ticks(0) == [0, 1]
    assert integer_ticks(1) == [0, 1]
    assert integer_ticks(3) == [0, 1, 2, 3]
    assert integer_ticks(5) == [0, 1, 2, 3, 4, 5]
    assert integer_ticks(7) == [0, 2, 4, 6, 8]
    assert integer_ticks(11) == [0, 5, 10, 15]
    assert integer_ticks(1234) == [0, 500, 1000, 1500]
    with transaction(db) as session:
        add(session, NOW, 2, 2)
        add(session, NOW, 4, 1)
    with transaction(db) as session:
        report = usage_report(session, Scope(), DAY, NOW)
        empty = usage_report(session, Scope(subscription_id=99), DAY, NOW)
    assert report.y_ticks() == [0, 1, 2, 3]
    axes = usage_figure(report).axes[0]
    assert list(axes.get_yticks()) == [0, 1, 2, 3]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["0", "1", "2", "3"]
    assert [label.get_text() for label in usage_figure(empty).axes[0].get_yticklabels()] == [
        "0",
        "1",
    ]


def make_subscriptions(session: Session) -> tuple[int, int, int]:
    ada = users.create_user(session, "ada@example.com")
    bob = users.create_user(session, "bob@example.com")
    starter = subscriptions.get_product(session, "starter")
    metered = subscriptions.get_product(session, "metered")
    a1 = subscriptions.create_subscription(session, ada, starter).subscription.id
    a2 = subscriptions.create_subscription(session, ada, metered).subscription.id
    b1 = subscriptions.create_subscription(session, bob, starter).subscription.id
    return a1, a2, b1


def test_breakdowns_by_api_product_subscription_and_top_developers(
    db: sessionmaker[Session],
) -> None:
    with transaction(db) as session:
        a1, a2, b1 = make_subscriptions(session)
        echo, names = api_id(session, "echo"), api_id(session, "names")
        add(session, NOW, 2, 5, subscription=a1, api=echo, buckets={4: 5})
        add(session, NOW, 5, 1, subscription=a1, api=names, buckets={10: 1})
        add(session, NOW, 2, 4, subscription=a2, api=names, buckets={4: 4})
        add(session, NOW, 2, 3, subscription=b1, api=echo, buckets={4: 3})
        add(session, NOW, 4, 8, subscription=0, api=names, buckets={1: 8})  # no key
        add(session, NOW, 2, 2, subscription=999, api=77)  # deleted subscription and API
    with transaction(db) as session:
        report = usage_report(session, Scope(), DAY, NOW, BREAKDOWNS)
        metered = session.scalars(select(Product.id).where(Product.name == "metered")).one()
        only_metered = usage_report(session, Scope(product_id=metered), DAY, NOW, BREAKDOWNS)
        only_names = usage_report(session, Scope(api_id=names), DAY, NOW)

    def table(name: str, source: Any = report) -> list[tuple[str, str, int, int]]:
        return [(b.label, b.value, b.stats.calls, b.stats.errors) for b in source.breakdowns[name]]

    assert report.total.calls == 23
    assert table("api") == [
        ("names", "names", 13, 9),
        ("echo", "echo", 8, 0),
        ("API #77 (removed)", "", 2, 0),
    ]
    no_subscription = "no subscription (no key, an unknown key, or a deleted subscription)"
    assert table("product") == [
        (no_subscription, "", 10, 8),
        ("starter", "starter", 9, 1),
        ("metered", "metered", 4, 0),
    ]
    assert table("subscription") == [
        ("no subscription (no key or an unknown key)", "0", 8, 8),
        (f"#{a1} starter (ada@example.com)", str(a1), 6, 1),
        (f"#{a2} metered (ada@example.com)", str(a2), 4, 0),
        (f"#{b1} starter (bob@example.com)", str(b1), 3, 0),
        ("#999 (deleted)", "999", 2, 0),
    ]
    assert table("developer") == [
        ("ada@example.com", "", 10, 1),
        (no_subscription, "", 10, 8),
        ("bob@example.com", "", 3, 0),
    ]
    assert only_metered.total.calls == 4
    assert table("developer", only_metered) == [("ada@example.com", "", 4, 0)]
    assert only_names.total.calls == 13 and only_names.total.p50 is not None


def test_the_csv_has_the_rows_behind_the_chart(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        a1, _, b1 = make_subscriptions(session)
        echo, names = api_id(session, "echo"), api_id(session, "names")
        hour = NOW.replace(minute=0, second=0)
        add(session, hour + timedelta(minutes=5), 2, 3, subscription=a1, api=echo, buckets={4: 3})
        add(session, hour + timedelta(minutes=9), 4, 1, subscription=a1, api=echo, buckets={1: 1})
        add(session, hour - timedelta(minutes=1), 2, 2, subscription=a1, api=names)
        add(session, hour, 5, 1, subscription=b1, api=echo)
        add(session, NOW - timedelta(days=3), 2, 50, subscription=a1, api=echo)  # not in 24 h
    with transaction(db) as session:
        mine = list(csv.DictReader(io.StringIO(usage_csv(session, Scope(a1), DAY, NOW))))
        everyone = list(csv.DictReader(io.StringIO(usage_csv(session, Scope(), DAY, NOW))))
        report = usage_report(session, Scope(a1), DAY, NOW)
    previous = (hour - timedelta(hours=1)).isoformat(timespec="minutes")
    assert [
        (r["start_utc"], r["api"], r["calls"], r["calls_2xx"], r["calls_4xx"]) for r in mine
    ] == [
        (previous, "names", "2", "2", "0"),
        (hour.isoformat(timespec="minutes"), "echo", "4", "3", "1"),
    ]
    echo_row = mine[1]
    assert echo_row["subscription"] == str(a1) and echo_row["product"] == "starter"
    assert echo_row["error_rate"] == "0.25" and echo_row["bytes_in"] == "40"
    assert float(echo_row["p50_ms"]) == pytest.approx(report.timeline[-1].p50, abs=1e-3)
    assert sum(int(r["calls"]) for r in mine) == report.total.calls == 6
    assert [r["subscription"] for r in everyone] == [str(a1), str(a1), str(b1)]


def test_quota_used_and_left_come_from_this_periods_usage(db: sessionmaker[Session]) -> None:
    with transaction(db) as session:
        _, metered, _ = make_subscriptions(session)
        now = datetime.now(UTC).replace(tzinfo=None)
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        add(session, today, 2, 2, subscription=metered)
        add(session, now, 4, 1, subscription=metered)
        add(session, today - timedelta(minutes=1), 2, 40, subscription=metered)  # yesterday
    with transaction(db) as session:
        subscription = subscriptions.get_subscription(session, metered)
        [daily] = quota_status(session, subscription, datetime.now(UTC).timestamp())
        assert (daily.name, daily.limit, daily.used, daily.remaining) == ("daily", 5, 3, 2)
        assert daily.resets_at == today + timedelta(days=1)
        add(session, now, 2, 9, subscription=metered, api=2)
    with transaction(db) as session:
        subscription = subscriptions.get_subscription(session, metered)
        [daily] = quota_status(session, subscription, datetime.now(UTC).timestamp())
        assert (daily.used, daily.remaining) == (12, 0)  # never below 0


def test_stats_add_up() -> None:
    one, two = Stats(), Stats()
    one.add_row(2, (3, 30, 300, 6.0, 0, 3))
    two.add_row(5, (1, 10, 100, 2.0, 0, 0, 1))
    one.add(two)
    assert (one.calls, one.errors, one.bytes_in, one.bytes_out) == (4, 1, 40, 400)
    assert one.mean_ms == 2.0 and one.buckets[:3] == [0, 3, 1]


def test_websocket_sessions_count_as_calls_but_not_in_latency(db: sessionmaker[Session]) -> None:
    """A session's recorded "latency" is how long it stayed open (minutes): it would drown the
    percentiles of the API's ordinary calls, so only its call count is taken."""
    with transaction(db) as session:
        echo = api_id(session, "echo")
        add(session, NOW - timedelta(minutes=5), 2, 10, api=echo, buckets={3: 10})
        add(session, NOW - timedelta(minutes=5), 1, 2, api=echo, buckets={17: 2})
    with transaction(db) as session:
        stats = usage_report(session, Scope(subscription_id=1), DAY, NOW).total
    assert stats.calls == 12 and stats.of_class(1) == 2
    assert stats.p99 is not None and stats.p99 < 8  # bucket 3 is [2, 4) ms: sessions left out
