"""Usage recording: counts per subscription x API x minute x status class, flushed in batches.

Each row holds calls, bytes in and out, the latency sum and the calls per latency bucket
(``tollway.db.models.latency_bucket``, powers of two), from which the portal estimates latency
percentiles. Recording is a dict update and a bucket index (one ``frexp``) on the hot path.
A background task swaps the buffer out and upserts it, adding to the stored counts; if the
store is down the rows are merged back and retried, up to a bound beyond which new rows are
dropped, counted and logged, so traffic is never blocked by the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from tollway.db.models import LATENCY_BUCKETS, LATENCY_COLUMNS, Usage, latency_bucket

logger = logging.getLogger("tollway.usage")

UsageKey = tuple[int, int, int, int]  # subscription id, api id, epoch minute, status class
# A row: calls, bytes in, bytes out, latency sum (ms), the calls per latency bucket, then the
# WebSocket messages each way.
SUMS = ("calls", "bytes_in", "bytes_out", "latency_ms")
FIRST_BUCKET = len(SUMS)
COUNTS = SUMS[:3]
MESSAGES = ("messages_in", "messages_out")
FIRST_MESSAGE = FIRST_BUCKET + LATENCY_BUCKETS


class UsageBuffer:
    """In-memory usage counters awaiting a flush."""

    def __init__(self, limit: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.clock = clock
        self.rows: dict[UsageKey, list[float]] = {}
        self.dropped = 0

    def record(
        self,
        subscription_id: int,
        api_id: int,
        status: int,
        bytes_in: int,
        bytes_out: int,
        latency_ms: float,
        messages: tuple[int, int] | None = None,
    ) -> None:
        """Count one call (``messages``: a WebSocket session's messages in and out)."""
        key = (subscription_id, api_id, int(self.clock()) // 60, status // 100)
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= self.limit:
                self._drop(1)
                return
            row = self.rows[key] = [0, 0, 0, 0.0] + [0] * (LATENCY_BUCKETS + len(MESSAGES))
        row[0] += 1
        row[1] += bytes_in
        row[2] += bytes_out
        row[3] += latency_ms
        row[FIRST_BUCKET + latency_bucket(latency_ms)] += 1
        if messages is not None:
            row[FIRST_MESSAGE] += messages[0]
            row[FIRST_MESSAGE + 1] += messages[1]

    def _drop(self, calls: int) -> None:
        if self.dropped == 0:
            logger.warning(
                "usage buffer full (%d rows): dropping usage until the store is back", self.limit
            )
        self.dropped += calls

    def take(self) -> dict[UsageKey, list[float]]:
        rows, self.rows = self.rows, {}
        return rows

    def give_back(self, rows: dict[UsageKey, list[float]]) -> None:
        """Merge rows whose write failed back in, respecting the bound."""
        for key, values in rows.items():
            current = self.rows.get(key)
            if current is not None:
                for i, value in enumerate(values):
                    current[i] += value
            elif len(self.rows) < self.limit:
                self.rows[key] = values
            else:
                self._drop(int(values[0]))


def write_usage(engine: Engine, rows: dict[UsageKey, list[float]]) -> None:
    """Upsert usage rows, adding to any counts already stored (one statement per batch)."""
    if not rows:
        return
    dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
    values: list[dict[str, Any]] = [
        {
            "subscription_id": sid,
            "api_id": aid,
            "minute": datetime.fromtimestamp(minute * 60, UTC).replace(tzinfo=None),
            "status_class": status_class,
            "latency_ms": row[3],
            **{name: int(value) for name, value in zip(COUNTS, row[:3], strict=True)},
            **{
                name: int(value)
                for name, value in zip(LATENCY_COLUMNS + MESSAGES, row[FIRST_BUCKET:], strict=True)
            },
        }
        for (sid, aid, minute, status_class), row in sorted(rows.items())
    ]
    statement = dialect.insert(Usage)
    statement = statement.on_conflict_do_update(
        index_elements=["subscription_id", "api_id", "minute", "status_class"],
        set_={
            name: getattr(Usage, name) + getattr(statement.excluded, name)
            for name in SUMS + LATENCY_COLUMNS + MESSAGES
        },
    )
    with engine.begin() as connection:
        for start in range(0, len(values), 500):
            connection.execute(statement, values[start : start + 500])
