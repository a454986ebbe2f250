"""The health and circuit breaker of one backend target, as this gateway process sees it.

A target is *out of rotation* while it is marked down by health checks or while its circuit is
open. Both learn from real calls (passive: a connect error, a timeout or a 5xx is a failure,
any other answer a success); only active probes (``pool.HealthChecker``) put a target marked
down back, and only the circuit's own clock half-opens it. The state lives in this process:
every gateway process learns it on its own, like Kong and Azure APIM (docs/gateway.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("tollway.gateway")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    path: str
    interval: float = 5.0
    timeout: float = 2.0
    healthy: int = 2
    unhealthy: int = 3


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5
    window: float = 10.0
    open_for: float = 30.0


class TargetState:
    """Up/down (health checks) and closed/open/half-open (circuit breaker) of one target."""

    def __init__(
        self,
        label: str,
        health: HealthSettings | None,
        breaker: BreakerSettings | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label  # "backend orders, target http://10.0.0.5:8000" (for the log)
        self.health = health
        self.breaker = breaker
        self.clock = clock
        self.up = True
        self.failures_in_row = 0
        self.successes_in_row = 0
        self.circuit = CLOSED
        self.opened_at = 0.0
        self.trial_at: float | None = None  # when the half-open trial call went out
        self._recent: deque[float] = deque()  # failure times within the breaker's window

    # what calls and probes report -------------------------------------------------------------
    def report(self, ok: bool) -> None:
        """The outcome of a real call (passive check)."""
        if ok:
            self.failures_in_row = 0
        else:
            self.successes_in_row = 0
            self.failures_in_row += 1
            health = self.health
            if health is not None and self.up and self.failures_in_row >= health.unhealthy:
                self.up = False
                logger.warning("%s: out of rotation (failed calls)", self.label)
        if self.breaker is not None:
            self._breaker_report(ok)

    def probe(self, ok: bool) -> None:
        """The outcome of an active health probe."""
        health = self.health
        assert health is not None
        if ok:
            self.failures_in_row = 0
            self.successes_in_row += 1
            if not self.up and self.successes_in_row >= health.healthy:
                self.up = True
                logger.warning("%s: back in rotation (health check passed)", self.label)
        else:
            self.successes_in_row = 0
            self.failures_in_row += 1
            if self.up and self.failures_in_row >= health.unhealthy:
                self.up = False
                logger.warning("%s: out of rotation (health check failed)", self.label)

    def _breaker_report(self, ok: bool) -> None:
        breaker = self.breaker
        assert breaker is not None
        now = self.clock()
        if self.circuit == HALF_OPEN:
            self.trial_at = None
            if ok:
                self.circuit = CLOSED
                self._recent.clear()
                logger.warning("%s: circuit closed (the trial call succeeded)", self.label)
            else:
                self._open(now)
            return
        if ok or self.circuit == OPEN:
            return
        recent = self._recent
        recent.append(now)
        while recent and recent[0] <= now - breaker.window:
            recent.popleft()
        if len(recent) >= breaker.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        if self.circuit == CLOSED:
            logger.warning("%s: circuit open (%d failed calls)", self.label, len(self._recent))
        self.circuit = OPEN
        self.opened_at = now
        self._recent.clear()

    # what the pool asks ---------------------------------------------------------------------
    def available(self) -> bool:
        """Whether a call may go to this target now (a half-open circuit: one trial call)."""
        if not self.up:
            return False
        breaker = self.breaker
        if breaker is None or self.circuit == CLOSED:
            return True
        now = self.clock()
        if self.circuit == OPEN:
            if now - self.opened_at < breaker.open_for:
                return False
            self.circuit = HALF_OPEN
            self.trial_at = None
        # half-open: one trial at a time; a trial that never reported is given up after open_for
        return self.trial_at is None or now - self.trial_at >= breaker.open_for

    def take_trial(self) -> None:
        """The pool chose this target: if its circuit is half-open, this call is the trial."""
        if self.circuit == HALF_OPEN:
            self.trial_at = self.clock()

    def retry_after(self) -> int:
        """Whole seconds until this target may take calls again (at least 1)."""
        wait = 1.0
        if self.breaker is not None and self.circuit == OPEN:
            wait = max(wait, self.opened_at + self.breaker.open_for - self.clock())
        if not self.up and self.health is not None:
            wait = max(wait, self.health.interval)
        return math.ceil(wait)

    def describe(self) -> dict[str, object]:
        report: dict[str, object] = {}
        if self.health is not None:
            report["health"] = "up" if self.up else "down"
        if self.breaker is not None:
            self.available()  # (an open circuit whose time is over shows as half-open)
            report["circuit"] = self.circuit
        return report
