"""Sign-in attempt limiting behind a tiny interface (later: Tollway's shared counter stores).

Only failed attempts count, per e-mail address and per client address, in a sliding window.
Addresses are counted whether or not an account exists, so the limit reveals nothing.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


class AttemptLimiter(Protocol):
    """Counts failures per key and says whether another attempt may be made."""

    def allowed(self, key: str) -> bool: ...

    def failed(self, key: str) -> None: ...

    def reset(self, key: str) -> None: ...


class SlidingWindowLimiter:
    """At most ``limit`` failures per key within the last ``window`` seconds (one process)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        cutoff = self.clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def allowed(self, key: str) -> bool:
        return len(self._recent(key)) < self.limit

    def failed(self, key: str) -> None:
        self._recent(key)
        self._failures.setdefault(key, deque()).append(self.clock())

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
