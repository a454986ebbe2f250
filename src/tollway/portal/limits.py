"""Sign-in attempt limiting on Tollway's own counter stores (memory, or Redis shared by every
gateway process, so the limit holds however many processes serve the portal).

Only failed attempts count, per e-mail address and per client address, in a sliding window.
Addresses are counted whether or not an account exists, so the limit reveals nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from tollway.policies.windows import sliding_position
from tollway.stores.base import CounterStore, LimitCheck, StoreUnavailable


class AttemptLimiter(Protocol):
    """Counts failures per key and says whether another attempt may be made."""

    async def allowed(self, key: str) -> bool: ...

    async def failed(self, key: str) -> None: ...

    async def reset(self, key: str) -> None: ...


class CounterAttemptLimiter:
    """At most ``limit`` failures per key within a sliding ``window`` of seconds."""

    def __init__(
        self,
        counters: CounterStore,
        name: str,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        self.prefix = f"tw:signin:{name}:"
        self.limit = limit
        self.window = window
        self.clock = clock

    def _check(self, key: str) -> LimitCheck:
        index, elapsed = sliding_position(self.clock(), self.window)
        # Keys are digests: no e-mail address or client address is written to the store.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        # cost 0 and limit - 1: allowed while fewer than ``limit`` failures are counted
        key = self.prefix + digest
        return LimitCheck(key, self.limit - 1, self.window, index, elapsed, True, 0)

    async def allowed(self, key: str) -> bool:
        try:
            allowed, _ = await self.counters.check([self._check(key)])
        except StoreUnavailable:
            return True  # like the gateway's limits: fail open, the store logs the outage
        return allowed

    async def failed(self, key: str) -> None:
        check = self._check(key)
        try:
            await self.counters.add(check.key, check.index, 1, check.ttl)
        except StoreUnavailable:
            return

    async def reset(self, key: str) -> None:
        check = self._check(key)
        try:
            await self.counters.clear(check.key, (check.index, check.index - 1))
        except StoreUnavailable:
            return
