"""What policies ask of a store, and the window arithmetic both stores share.

A request's limits (every rate limit and quota that applies to it) are checked in **one** call:
either all of them have room and each is charged, or none is charged and the request is refused.
So a refused call never eats into another limit, and Redis is asked once per request.

Rate limits use the sliding window counter: the current fixed window's count plus the previous
window's, weighted by how much of it still overlaps the sliding window. Unlike a plain fixed
window it cannot let twice the limit through around a window boundary.
Quotas use calendar windows (fixed; the caller computes their start and end).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class StoreUnavailable(Exception):
    """The shared store could not be reached (the gateway then fails open or closed)."""


@dataclass(slots=True)
class LimitCheck:
    """One counter to check (and charge ``cost`` to) for the current request.

    Sliding windows: ``window`` is the length, ``index`` the number of the current fixed window
    (``now // window``) and ``elapsed`` how far into it we are (seconds).
    Calendar windows: ``index`` identifies the period, ``elapsed`` is the time since it began and
    ``window`` its length (so ``window - elapsed`` is the time left).
    """

    key: str
    limit: int
    window: float
    index: int
    elapsed: float
    sliding: bool
    cost: int = 1

    def slot(self, index: int) -> str:
        return f"{self.key}:{index}"

    @property
    def ttl(self) -> int:
        """Seconds a window's counter must live (the next window still reads it if sliding)."""
        return math.ceil(self.window * (2 if self.sliding else 1) - self.elapsed) + 1


class LimitState:
    """How one limit stands after a check (built per request: a plain slotted class)."""

    __slots__ = ("check", "current", "limit", "previous", "remaining", "used")

    def __init__(self, check: LimitCheck, current: int, previous: int, used: float) -> None:
        self.check = check
        self.current = current
        self.previous = previous
        self.limit = check.limit
        self.used = used
        self.remaining = max(0, math.floor(check.limit - used))

    @property
    def reset(self) -> int:
        """Seconds until the limit has fully recovered (the RateLimit header's ``t``)."""
        if not self.used:
            return 0
        check = self.check
        left = check.window - check.elapsed
        return max(1, math.ceil(left + (check.window if check.sliding and self.current else 0)))

    @property
    def retry_after(self) -> int:
        """Seconds until one more call fits (meaningful when refused)."""
        return _retry_after(self.check, self.current, self.previous)


def used_of(check: LimitCheck, current: int, previous: int) -> float:
    """Calls counted against ``check``: sliding windows weigh the previous window's count."""
    if check.sliding and previous:
        return previous * max(0.0, 1.0 - check.elapsed / check.window) + current
    return float(current)


def evaluate(check: LimitCheck, current: int, previous: int) -> LimitState:
    """Where ``check`` stands given the current and previous windows' counts."""
    return LimitState(check, current, previous, used_of(check, current, previous))


def _retry_after(check: LimitCheck, current: int, previous: int) -> int:
    """Seconds until ``check.cost`` more fits (>= 1)."""
    window, elapsed, room = check.window, check.elapsed, check.limit - check.cost
    if not check.sliding:
        return max(1, math.ceil(window - elapsed))
    if current <= room and previous > 0:
        # Wait until the previous window's weight has dropped enough.
        wait = window * (1 - (room - current) / previous) - elapsed
        return max(1, math.ceil(wait))
    if current == 0:
        return 1
    # The current window is full by itself: wait for it to become "previous" and fade.
    fade = window * (1 - room / current) if room > 0 else window
    return max(1, math.ceil(window - elapsed + fade))


class CounterStore(Protocol):
    """Counters for rate limits and quotas."""

    is_shared: bool  # True when other processes see the same counters

    async def check(self, checks: Sequence[LimitCheck]) -> tuple[bool, list[LimitState]]:
        """Check all, and charge all if every one has room; one round trip."""
        ...

    def check_now(self, checks: Sequence[LimitCheck]) -> tuple[bool, list[LimitState]] | None:
        """The same without awaiting, when the store can answer synchronously (else None)."""
        ...

    async def add(self, key: str, index: int, amount: int, ttl: int) -> None:
        """Add to a counter after the fact (bytes quotas learn the size after the response)."""
        ...

    def add_now(self, key: str, index: int, amount: int, ttl: int) -> bool:
        """The same without awaiting, if the store can (False: use :meth:`add`)."""
        ...

    async def clear(self, key: str, indexes: Sequence[int]) -> None:
        """Forget these windows of a counter (e.g. failed sign-ins after a success)."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float


class CacheStore(Protocol):
    """A response cache bounded by size."""

    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, response: CachedResponse, ttl: float) -> None: ...
