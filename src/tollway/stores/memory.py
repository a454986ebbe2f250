"""In-process counters and cache: exact and fast, but each process has its own.

With more than one worker process these would be per-process (a 50-call limit would let
50 x workers through), so ``tollway serve --workers N`` requires Redis (see ``server.py``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from tollway.stores.base import CachedResponse, LimitCheck, LimitState, evaluate, used_of

PRUNE_EVERY = 10_000  # checks between sweeps of expired counters


class MemoryCounterStore:
    """Counters in a dict: slot key -> (count, expires at)."""

    is_shared = False

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # (counter key, window index) -> [count, expires at]; tuple keys, no string formatting
        self._counts: dict[tuple[str, int], list[float]] = {}
        self._clock = clock
        self._checks = 0

    def _incr(self, slot: tuple[str, int], amount: int, ttl: int, now: float) -> None:
        entry = self._counts.get(slot)
        if entry is None or entry[1] <= now:
            self._counts[slot] = [amount, now + ttl]
        else:
            entry[0] += amount

    def check_now(self, checks: Sequence[LimitCheck]) -> tuple[bool, list[LimitState]]:
        now = self._clock()
        self._checks += 1
        if self._checks % PRUNE_EVERY == 0:
            self._prune(now)
        found = self._counts.get
        counts = []
        allowed = True
        for check in checks:
            entry = found((check.key, check.index))
            current = int(entry[0]) if entry is not None and entry[1] > now else 0
            previous = 0
            if check.sliding:
                entry = found((check.key, check.index - 1))
                previous = int(entry[0]) if entry is not None and entry[1] > now else 0
            counts.append((current, previous))
            if used_of(check, current, previous) + check.cost > check.limit:
                allowed = False
        if allowed:
            for i, check in enumerate(checks):
                if check.cost:
                    self._incr((check.key, check.index), check.cost, check.ttl, now)
                    counts[i] = (counts[i][0] + check.cost, counts[i][1])
        states = [evaluate(check, c, p) for check, (c, p) in zip(checks, counts, strict=True)]
        return allowed, states

    async def check(self, checks: Sequence[LimitCheck]) -> tuple[bool, list[LimitState]]:
        return self.check_now(checks)

    async def add(self, key: str, index: int, amount: int, ttl: int) -> None:
        self.add_now(key, index, amount, ttl)

    def add_now(self, key: str, index: int, amount: int, ttl: int) -> bool:
        self._incr((key, index), amount, ttl, self._clock())
        return True

    async def clear(self, key: str, indexes: Sequence[int]) -> None:
        for index in indexes:
            self._counts.pop((key, index), None)

    def _prune(self, now: float) -> None:
        for slot in [slot for slot, (_, expires) in self._counts.items() if expires <= now]:
            del self._counts[slot]

    async def aclose(self) -> None:
        self._counts.clear()


class MemoryCacheStore:
    """LRU cache bounded by the total size of the bodies and headers it holds."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CachedResponse, float, int]] = OrderedDict()
        self._size = 0
        self._clock = clock

    async def get(self, key: str) -> CachedResponse | None:
        found = self._entries.get(key)
        if found is None:
            return None
        response, expires, _ = found
        if expires <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return response

    async def put(self, key: str, response: CachedResponse, ttl: float) -> None:
        size = len(response.body) + sum(len(n) + len(v) for n, v in response.headers) + 64
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (response, self._clock() + ttl, size)
        self._size += size
        while self._size > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        _, _, size = self._entries.pop(key)
        self._size -= size
