"""Usage reports per subscription: calls per hour (last 24 h) or per day (last 30 days)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.db.models import Usage

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
