"""Sign-in attempt limiting on Tollway's own counter stores (memory, or Redis shared by every
gateway process, so the limit holds however many processes serve the portal).

An attempt is counted *before* the password is checked, in one atomic step of the store (the
same check-and-charge that rate limits use), so a burst of concurrent guesses cannot all be
checked: once the limit is reached, even the right password is refused. Attempts that succeed
are given back (per client address) or wipe the count (per e-mail address), so only failures
accumulate. Addresses are counted whether or not an account exists, so the limit reveals
nothing, and the store's keys are digests: no e-mail or client address is written to it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from tollway.policies.windows import sliding_position
from tollway.stores.base import CounterStore, LimitCheck, StoreUnavailable


class AttemptLimiter(Protocol):
    """Counts attempts per key; refuses once ``limit`` are counted in the window."""

    async def attempt(self, key: str) -> LimitCheck | None: ...

    async def forgive(self, charge: LimitCheck) -> None: ...

    async def reset(self, key: str) -> None: ...


class CounterAttemptLimiter:
    """At most ``limit`` attempts per key within a sliding ``window`` of seconds."""

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
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return LimitCheck(self.prefix + digest, self.limit, self.window, index, elapsed, True, 1)

    async def attempt(self, key: str) -> LimitCheck | None:
        """Count one attempt now; None (and nothing counted) when the limit is reached.

        The returned charge is what :meth:`forgive` gives back.
        """
        check = self._check(key)
        try:
            allowed, _ = await self.counters.check([check])
        except StoreUnavailable:
            return check  # like the gateway's limits: fail open, the store logs the outage
        return check if allowed else None

    async def forgive(self, charge: LimitCheck) -> None:
        """Give back an attempt that succeeded (in the window it was counted in)."""
        try:
            await self.counters.add(charge.key, charge.index, -charge.cost, charge.ttl)
        except StoreUnavailable:
            return

    async def reset(self, key: str) -> None:
        """Forget every attempt counted for ``key``."""
        check = self._check(key)
        try:
            await self.counters.clear(check.key, (check.index, check.index - 1))
        except StoreUnavailable:
            return
