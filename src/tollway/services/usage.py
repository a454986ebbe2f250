"""Usage analytics from the per-minute usage rows: calls by status class over time, error rate,
latency percentiles estimated from the latency buckets, breakdowns, CSV, quota used vs left.

One query shape serves every view: sums grouped by some keys (time bucket, API, subscription,
product, developer) and the status class, filtered by a :class:`Scope`, summed in the database.

Latency percentiles are estimates: each call is counted in a power-of-two bucket
(``tollway.db.models.latency_bucket``); the estimate interpolates geometrically inside the bucket
that holds the wanted rank, so it is in the same bucket as the true value, never off by a factor
of 2 or more (under 0.5 ms: linear in ``[0, 0.5)``; from 32 768 ms on only "at least" is known).
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, extract, func, literal_column, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tollway.db.models import (
    LATENCY_BOUNDS,
    LATENCY_BUCKETS,
    LATENCY_COLUMNS,
    Api,
    Product,
    Subscription,
    Usage,
    User,
)
from tollway.errors import NotFound, UserError
from tollway.policies.windows import calendar_window

STATUS_CLASSES = (1, 2, 3, 4, 5)
SUMS = ("calls", "bytes_in", "bytes_out", "latency_ms", *LATENCY_COLUMNS)
KeyColumn = ColumnElement[Any] | InstrumentedAttribute[Any]


# periods -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Period:
    """A look-back window cut into ``count`` equal steps, aligned on the step (UTC)."""

    name: str
    title: str
    step: timedelta
    count: int
    step_name: str
    row_format: str
    tick_format: str


PERIODS = {
    p.name: p
    for p in (
        Period("1h", "last hour", timedelta(minutes=1), 60, "minute", "%Y-%m-%d %H:%M", "%H:%M"),
        Period("24h", "last 24 hours", timedelta(hours=1), 24, "hour", "%Y-%m-%d %H:00", "%H:00"),
        Period("7d", "last 7 days", timedelta(hours=6), 28, "6 hours", "%Y-%m-%d %H:00", "%d %b"),
        Period("30d", "last 30 days", timedelta(days=1), 30, "day", "%Y-%m-%d", "%d %b"),
    )
}
OLD_NAMES = {"day": "24h", "month": "30d"}  # links from before the analytics pages


def period_named(name: str | None) -> Period:
    """The period for a ``period`` query value (24 h when absent)."""
    period = PERIODS.get(OLD_NAMES.get(name or "24h", name or "24h"))
    if period is None:
        raise UserError(f"Unknown period {name!r}: use one of {', '.join(PERIODS)}.")
    return period


def bucket_starts(period: Period, now: datetime) -> list[datetime]:
    """The start of each step of ``period`` ending with the step that holds ``now`` (naive UTC)."""
    step = int(period.step.total_seconds())
    last = int(now.replace(tzinfo=UTC).timestamp()) // step
    return [_naive(n * step) for n in range(last - period.count + 1, last + 1)]


def _naive(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


# numbers -----------------------------------------------------------------------------------------
def estimate_percentile(buckets: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of latencies counted per bucket, in ms; None if empty."""
    total = sum(buckets)
    if total == 0:
        return None
    cumulative = list(itertools.accumulate(buckets))
    i = bisect.bisect_left(cumulative, q * total)  # the first bucket reaching the rank
    share = (q * total - (cumulative[i] - buckets[i])) / buckets[i]  # how far into it, 0..1
    if i == 0:
        return LATENCY_BOUNDS[0] * share
    if i == LATENCY_BUCKETS - 1:
        return LATENCY_BOUNDS[-1]  # at least this much
    return float(LATENCY_BOUNDS[i - 1] * 2**share)


def integer_ticks(highest: int, most: int = 6) -> list[int]:
    """Y-axis ticks for counts: whole numbers from 0 in steps of 1, 2 or 5 x 10^k, at most
    ``most`` of them, the last one at or above ``highest`` (a call is never split)."""
    step = 1
    while math.ceil(highest / step) + 1 > most:
        step = _next_step(step)
    top = max(math.ceil(highest / step), 1) * step
    return list(range(0, top + 1, step))


def _next_step(step: int) -> int:
    magnitude = int(10 ** (len(str(step)) - 1))
    leading = step // magnitude
    return {1: 2, 2: 5, 5: 10}[leading] * magnitude


@dataclass
class Stats:
    """Sums over some usage rows: calls per status class, bytes, latency sum and buckets."""

    calls_by_class: list[int] = field(default_factory=lambda: [0] * len(STATUS_CLASSES))
    bytes_in: int = 0
    bytes_out: int = 0
    latency_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    def add_row(self, status_class: int, sums: Sequence[Any]) -> None:
        calls, bytes_in, bytes_out, latency_ms, *buckets = sums
        if status_class in STATUS_CLASSES:
            self.calls_by_class[status_class - 1] += int(calls or 0)
        self.bytes_in += int(bytes_in or 0)
        self.bytes_out += int(bytes_out or 0)
        if status_class == 1:
            return  # a WebSocket session's "latency" is how long it lasted: not a response time
        self.latency_ms += float(latency_ms or 0)
        for i, count in enumerate(buckets):
            self.buckets[i] += int(count or 0)

    def add(self, other: Stats) -> None:
        for i, calls in enumerate(other.calls_by_class):
            self.calls_by_class[i] += calls
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.latency_ms += other.latency_ms
        for i, count in enumerate(other.buckets):
            self.buckets[i] += count

    @property
    def calls(self) -> int:
        return sum(self.calls_by_class)

    def of_class(self, status_class: int) -> int:
        return self.calls_by_class[status_class - 1]

    @property
    def errors(self) -> int:
        """Calls answered 4xx (the client's side: key, quota, bad request) or 5xx (the API's)."""
        return self.of_class(4) + self.of_class(5)

    @property
    def error_rate(self) -> float | None:
        """Share of calls answered 4xx or 5xx (0..1); None without calls."""
        return self.errors / self.calls if self.calls else None

    @property
    def server_error_rate(self) -> float | None:
        return self.of_class(5) / self.calls if self.calls else None

    @property
    def mean_ms(self) -> float | None:
        timed = self.calls - self.of_class(1)  # (WebSocket sessions carry no response time)
        return self.latency_ms / timed if timed else None

    def percentile(self, q: float) -> float | None:
        return estimate_percentile(self.buckets, q)

    @property
    def p50(self) -> float | None:
        return self.percentile(0.5)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)

    @property
    def p99(self) -> float | None:
        return self.percentile(0.99)


# the query ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Which usage to look at; None means any."""

    subscription_id: int | None = None
    api_id: int | None = None
    product_id: int | None = None


def _step_number(session: Session, step: timedelta) -> ColumnElement[Any]:
    """The number of the ``step``-long bucket a row's minute is in (epoch seconds // step)."""
    if session.get_bind().dialect.name == "sqlite":
        epoch = cast(func.strftime("%s", Usage.minute), BigInteger)
    else:
        epoch = cast(extract("epoch", Usage.minute), BigInteger)
    # a literal (not a bound parameter) so that SELECT and GROUP BY are the same expression
    return epoch.op("/")(literal_column(str(int(step.total_seconds()))))


def _grouped(
    session: Session,
    scope: Scope,
    start: datetime,
    end: datetime,
    keys: Sequence[KeyColumn],
) -> dict[tuple[Any, ...], Stats]:
    """Sums of the usage rows in ``[start, end)`` within ``scope``, per value of ``keys``."""
    query = select(*keys, Usage.status_class, *(func.sum(getattr(Usage, n)) for n in SUMS))
    query = query.where(Usage.minute >= start, Usage.minute < end)
    if scope.subscription_id is not None:
        query = query.where(Usage.subscription_id == scope.subscription_id)
    if scope.api_id is not None:
        query = query.where(Usage.api_id == scope.api_id)
    if scope.product_id is not None:
        query = query.where(Subscription.product_id == scope.product_id)
    query = query.outerjoin(Subscription, Subscription.id == Usage.subscription_id)
    query = query.group_by(*keys, Usage.status_class)
    result: dict[tuple[Any, ...], Stats] = {}
    width = len(keys)
    for row in session.execute(query):
        stats = result.setdefault(tuple(row[:width]), Stats())
        stats.add_row(row[width], row[width + 1 :])
    return result


# reports -----------------------------------------------------------------------------------------
@dataclass
class Breakdown:
    """One line of a breakdown table: what (``label``), its filter value (or ""), its sums."""

    label: str
    value: str
    stats: Stats


@dataclass
class UsageReport:
    """Usage in ``scope`` over ``period``: per step (``starts``, oldest first) and in total."""

    period: Period
    starts: list[datetime]
    timeline: list[Stats]
    total: Stats
    breakdowns: dict[str, list[Breakdown]] = field(default_factory=dict)

    def calls(self, status_class: int) -> list[int]:
        """Calls of one status class per step, for the chart."""
        return [stats.of_class(status_class) for stats in self.timeline]

    def y_ticks(self) -> list[int]:
        """Whole-number ticks for the stacked chart (a call is never split)."""
        return integer_ticks(max((stats.calls for stats in self.timeline), default=0))

    def rows(self) -> list[tuple[datetime, Stats]]:
        """(step start, sums) for the table, newest first."""
        return list(reversed(list(zip(self.starts, self.timeline, strict=True))))


BREAKDOWNS = ("api", "product", "subscription", "developer")
NO_SUBSCRIPTION = "no subscription (no key, an unknown key, or a deleted subscription)"


def usage_report(
    session: Session,
    scope: Scope,
    period: Period,
    now: datetime,
    breakdowns: Sequence[str] = ("api",),
    top: int = 10,
) -> UsageReport:
    """Sum the usage rows in ``scope`` into the steps of ``period`` ending at ``now`` (naive UTC),
    with breakdowns by ``api``, ``product``, ``subscription`` and/or ``developer`` (the
    ``top`` by calls, most first)."""
    starts = bucket_starts(period, now)
    start, end = starts[0], starts[-1] + period.step
    first = int(start.replace(tzinfo=UTC).timestamp() // period.step.total_seconds())
    timeline = [Stats() for _ in starts]
    total = Stats()
    by_step = _grouped(session, scope, start, end, [_step_number(session, period.step)])
    for (number,), stats in by_step.items():
        timeline[int(number) - first].add(stats)
        total.add(stats)
    report = UsageReport(period, starts, timeline, total)
    for name in breakdowns:
        key, labels = _BREAKDOWN_KEYS[name]
        grouped = _grouped(session, scope, start, end, [key])
        ranked = sorted(grouped.items(), key=lambda item: (-item[1].calls, str(item[0])))[:top]
        names = labels(session, [k for (k,), _ in ranked])
        report.breakdowns[name] = [Breakdown(*names[k], stats) for (k,), stats in ranked]
    return report


Labeller = Callable[[Session, list[Any]], dict[Any, tuple[str, str]]]
"""(label for people, filter value) per key of a breakdown."""


def _api_labels(session: Session, ids: list[Any]) -> dict[Any, tuple[str, str]]:
    names = dict(session.execute(select(Api.id, Api.name).where(Api.id.in_(ids))).all())
    return {i: (names[i], names[i]) if i in names else (f"API #{i} (removed)", "") for i in ids}


def _product_labels(session: Session, ids: list[Any]) -> dict[Any, tuple[str, str]]:
    known = {i for i in ids if i is not None}
    names = dict(
        session.execute(select(Product.id, Product.name).where(Product.id.in_(known))).all()
    )
    labels: dict[Any, tuple[str, str]] = {None: (NO_SUBSCRIPTION, "")}
    labels |= {i: (names[i], names[i]) if i in names else (f"product #{i}", "") for i in known}
    return labels


def subscription_label(subscription: Subscription | None, subscription_id: int) -> str:
    if subscription_id == 0:
        return "no subscription (no key or an unknown key)"
    if subscription is None:
        return f"#{subscription_id} (deleted)"
    return f"#{subscription.id} {subscription.product.name} ({subscription.user.email})"


def _subscription_labels(session: Session, ids: list[Any]) -> dict[Any, tuple[str, str]]:
    found = {s.id: s for s in session.scalars(select(Subscription).where(Subscription.id.in_(ids)))}
    return {i: (subscription_label(found.get(i), i), str(i)) for i in ids}


def _developer_labels(session: Session, ids: list[Any]) -> dict[Any, tuple[str, str]]:
    emails = dict(session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())
    labels: dict[Any, tuple[str, str]] = {None: (NO_SUBSCRIPTION, "")}
    labels |= {i: (emails.get(i, f"user #{i} (deleted)"), "") for i in ids if i is not None}
    return labels


_BREAKDOWN_KEYS: dict[str, tuple[KeyColumn, Labeller]] = {
    "api": (Usage.api_id, _api_labels),
    "product": (Subscription.product_id, _product_labels),
    "subscription": (Usage.subscription_id, _subscription_labels),
    "developer": (Subscription.user_id, _developer_labels),
}


# CSV ---------------------------------------------------------------------------------------------
CSV_COLUMNS = (
    "start_utc",
    "api",
    "subscription",
    "product",
    "calls",
    "calls_1xx",
    "calls_2xx",
    "calls_3xx",
    "calls_4xx",
    "calls_5xx",
    "error_rate",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "bytes_in",
    "bytes_out",
)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}".rstrip("0").rstrip(".")


def usage_csv(session: Session, scope: Scope, period: Period, now: datetime) -> str:
    """The rows behind the chart, one line per step x API x subscription with calls, oldest
    first; percentiles are estimates as on the pages, rates 0..1."""
    starts = bucket_starts(period, now)
    start, end = starts[0], starts[-1] + period.step
    step = _step_number(session, period.step)
    # a subscription's product goes with it: grouping by both is grouping by the subscription
    keys: list[KeyColumn] = [step, Usage.api_id, Usage.subscription_id, Subscription.product_id]
    grouped = _grouped(session, scope, start, end, keys)
    apis = _api_labels(session, sorted({k[1] for k in grouped}))
    products = _product_labels(session, [k[3] for k in grouped])
    seconds = period.step.total_seconds()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = sorted(grouped.items(), key=lambda item: item[0][:3])
    for (number, api_id, subscription_id, product_id), stats in rows:
        writer.writerow(
            [
                _naive(int(number) * seconds).isoformat(timespec="minutes"),
                apis[api_id][0],
                subscription_id,
                products[product_id][1],
                stats.calls,
                *stats.calls_by_class,
                _number(stats.error_rate),
                _number(stats.mean_ms),
                _number(stats.p50),
                _number(stats.p95),
                _number(stats.p99),
                stats.bytes_in,
                stats.bytes_out,
            ]
        )
    return out.getvalue()


# filters -----------------------------------------------------------------------------------------
def api_named(session: Session, name: str) -> Api:
    api = session.scalar(select(Api).where(Api.name == name))
    if api is None:
        raise NotFound(f"No API named {name!r}: pick one from the list.")
    return api


def product_named(session: Session, name: str) -> Product:
    product = session.scalar(select(Product).where(Product.name == name))
    if product is None:
        raise NotFound(f"No product named {name!r}: pick one from the list.")
    return product


def api_names(session: Session) -> list[str]:
    return list(session.scalars(select(Api.name).order_by(Api.name)))


def product_names(session: Session) -> list[str]:
    return list(session.scalars(select(Product.name).order_by(Product.name)))


# quotas ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuotaStatus:
    """A product quota on calls and how much of it the recorded usage has taken."""

    name: str
    limit: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)


def quota_status(session: Session, subscription: Subscription, now: float) -> list[QuotaStatus]:
    """Call quotas counted per subscription on its product, against the recorded usage.

    An estimate for people: it trails the gateway by one usage flush, and counts every recorded
    call, while the gateway's own counter (authoritative) skips calls refused by the quota.
    """
    statuses = []
    for policy in subscription.product.policies:
        if policy.get("type") != "quota" or not policy.get("calls"):
            continue
        if policy.get("key", "subscription") != "subscription":
            continue
        period = policy.get("period", "month")
        _, elapsed, length = calendar_window(now, period, policy.get("timezone", "UTC"))
        start = datetime.fromtimestamp(now - elapsed, UTC).replace(tzinfo=None)
        used = session.scalar(
            select(func.coalesce(func.sum(Usage.calls), 0)).where(
                Usage.subscription_id == subscription.id, Usage.minute >= start
            )
        )
        name = policy.get("name") or f"quota-{period}"
        resets = start + timedelta(seconds=length)
        statuses.append(QuotaStatus(name, int(policy["calls"]), int(used or 0), resets))
    return statuses
