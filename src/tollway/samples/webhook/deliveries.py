"""The in-memory, bounded record of accepted deliveries."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tollway.samples.webhook.models import DeliveryOut, DeliveryState


@dataclass
class Delivery:
    """One delivery, updated in place as its action runs."""

    id: int
    repo_name: str
    tag: str
    pusher: str
    state: DeliveryState
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    exit_code: int | None = None
    duration_seconds: float | None = None
    timed_out: bool = False
    output: str = ""
    output_truncated: bool = False
    error: str | None = None

    def public(self) -> DeliveryOut:
        """The delivery as ``GET /deliveries`` shows it."""
        return DeliveryOut(
            id=self.id,
            received_at=self.received_at,
            repo_name=self.repo_name,
            tag=self.tag,
            pusher=self.pusher,
            state=self.state,
            exit_code=self.exit_code,
            duration_seconds=self.duration_seconds,
            timed_out=self.timed_out,
            output=self.output,
            output_truncated=self.output_truncated,
            error=self.error,
        )


class DeliveryLog:
    """The last ``limit`` deliveries; the oldest drop off first."""

    def __init__(self, limit: int) -> None:
        self._items: deque[Delivery] = deque(maxlen=limit)
        self._next_id = 1

    def add(self, repo_name: str, tag: str, pusher: str, state: DeliveryState) -> Delivery:
        """Record a new delivery and return it for later updates."""
        delivery = Delivery(self._next_id, repo_name, tag, pusher, state)
        self._next_id += 1
        self._items.append(delivery)
        return delivery

    def newest_first(self) -> list[Delivery]:
        """All kept deliveries, most recent first."""
        return list(reversed(self._items))
