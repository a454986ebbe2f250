"""Usage reports per subscription: calls per hour (last 24 h) or per day (last 30 days)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.db.models import Subscription, Usage
from tollway.policies.windows import calendar_window

Span = Literal["day", "month"]
STATUS_CLASSES = (1, 2, 3, 4, 5)


@dataclass
class UsageReport:
    """Calls per bucket and status class; ``buckets`` are the bucket start times, oldest first."""

    span: Span
    buckets: list[datetime]
    calls: dict[int, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.calls.values())

    def rows(self) -> list[tuple[datetime, list[int]]]:
        """(bucket, calls per status class 1..5) for the table, newest first."""
        table = [
            (bucket, [self.calls[c][i] for c in STATUS_CLASSES])
            for i, bucket in enumerate(self.buckets)
        ]
        return list(reversed(table))


def _buckets(span: Span, now: datetime) -> tuple[list[datetime], timedelta]:
    if span == "day":
        step, count = timedelta(hours=1), 24
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        step, count = timedelta(days=1), 30
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [last - step * (count - 1 - i) for i in range(count)], step


def usage_report(session: Session, subscription_id: int, span: Span, now: datetime) -> UsageReport:
    """Sum the per-minute usage rows of one subscription into hourly or daily buckets (UTC)."""
    buckets, step = _buckets(span, now)
    report = UsageReport(span, buckets, {c: [0] * len(buckets) for c in STATUS_CLASSES})
    rows = session.execute(
        select(Usage.minute, Usage.status_class, func.sum(Usage.calls))
        .where(Usage.subscription_id == subscription_id, Usage.minute >= buckets[0])
        .group_by(Usage.minute, Usage.status_class)
    )
    for minute, status_class, calls in rows:
        index = int((minute - buckets[0]) / step)
        if 0 <= index < len(buckets) and status_class in report.calls:
            report.calls[status_class][index] += int(calls)
    return report


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


Period = Literal["hour", "day"]


def usage_summary(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    period: Period = "day",
    subscription_id: int | None = None,
    api_id: int | None = None,
    product_id: int | None = None,
) -> list[dict[str, object]]:
    """Calls per ``period`` (UTC buckets, oldest first) between ``since`` and ``until``, by status
    class, for one subscription, API and/or product (every filter given must hold)."""
    query = (
        select(Usage.minute, Usage.status_class, func.sum(Usage.calls))
        .where(Usage.minute >= since, Usage.minute < until)
        .group_by(Usage.minute, Usage.status_class)
    )
    if subscription_id is not None:
        query = query.where(Usage.subscription_id == subscription_id)
    if api_id is not None:
        query = query.where(Usage.api_id == api_id)
    if product_id is not None:
        query = query.where(
            Usage.subscription_id.in_(
                select(Subscription.id).where(Subscription.product_id == product_id)
            )
        )
    buckets: dict[datetime, dict[str, int]] = {}
    for minute, status_class, calls in session.execute(query):
        start = minute.replace(minute=0, second=0, microsecond=0)
        if period == "day":
            start = start.replace(hour=0)
        bucket = buckets.setdefault(start, {f"{c}xx": 0 for c in STATUS_CLASSES})
        key = f"{status_class}xx"
        if key in bucket:
            bucket[key] += int(calls)
    return [
        {"start": start.isoformat() + "Z", "calls": sum(b.values()), "by_status": b}
        for start, b in sorted(buckets.items())
    ]
