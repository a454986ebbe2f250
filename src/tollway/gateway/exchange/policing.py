"""The policy runtime the exchange core (``exchange.core``) uses: the counter store.

``Policing.apply_limits`` checks limits when the store can answer without waiting (memory, and
no AUTHENTICATE hook to run first); ``Policing.settle`` does the rest (the chain's
``authenticate`` runners, then limits on Redis: one round trip for all of them);
``Policing.record_bytes`` charges byte quotas at the end. What a limit decides (refusal,
RateLimit headers) is ``tollway.policies.limits``; the order is ``tollway.policies.phases``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from tollway import problems
from tollway.policies.base import Reject, RequestContext
from tollway.policies.chain import Chain
from tollway.policies.limits import Limits, limit_headers, limit_refusal
from tollway.stores.base import CounterStore, LimitCheck, LimitState, StoreUnavailable
from tollway.types import Headers

logger = logging.getLogger("tollway.gateway")


@dataclass(slots=True)
class Preflight:
    """A CORS preflight the gateway answers itself (204)."""

    headers: Headers


@dataclass(slots=True)
class Pending:
    """What :meth:`Policing.settle` still has to do for an admitted request."""

    chain: Chain
    ctx: RequestContext
    limits: Limits | None = None
    response_headers: Headers = field(default_factory=list)

    def edit_response(self, headers: Headers) -> Headers:
        """The response head as the client gets it: set-header edits, then the headers the
        chain adds (CORS, RateLimit). For the backend's answers and cache hits alike."""
        return self.chain.edit_response(headers) + self.response_headers


class Policing:
    """The policy runtime of one gateway: its counter store and failure policy."""

    def __init__(self, counters: CounterStore, *, fail_closed: bool) -> None:
        self.counters = counters
        self.fail_closed = fail_closed
        self.store_failures = 0
        self.fail_open_calls = 0  # calls let through while the store was down (metrics)

    def apply_limits(self, pending: Pending) -> Reject | None:
        """Check limits now if the store can answer without waiting; else leave them pending."""
        limits = pending.limits
        if limits is None or pending.chain.authenticate_hooks:
            return None  # (AUTHENTICATE comes first in the phase order: settle() runs both)
        result = self.counters.check_now(limits.checks)
        if result is None:
            return None
        pending.limits = None
        return self._judge(limits, result, pending)

    def _judge(
        self, limits: Limits, result: tuple[bool, list[LimitState]], pending: Pending
    ) -> Reject | None:
        allowed, states = result
        if not allowed:
            return limit_refusal(limits, states)
        pending.response_headers += limit_headers(limits, states)
        return None

    def needs_settling(self, pending: Pending) -> bool:
        return pending.limits is not None or bool(pending.chain.authenticate_hooks)

    async def settle(self, pending: Pending) -> Reject | None:
        if pending.chain.authenticate_hooks:
            refused = await pending.chain.authenticate(pending.ctx)
            if refused is not None:
                return refused
        limits = pending.limits
        if limits is None:
            return None
        pending.limits = None
        try:
            result = await self.counters.check(limits.checks)
        except StoreUnavailable:
            self.store_failures += 1
            if self.fail_closed:
                return Reject(problems.LIMITS_UNAVAILABLE, headers=[(b"retry-after", b"1")])
            self.fail_open_calls += 1
            return None  # fail open: the outage is logged once by the store
        return self._judge(limits, result, pending)

    def record_bytes(self, pending: Pending | None, amount: int) -> None:
        """Charge a finished call's body bytes to its byte quotas."""
        if pending is None or amount <= 0 or not pending.chain.byte_checks_hooks:
            return
        for check in pending.chain.byte_checks(pending.ctx):
            if self.counters.add_now(check.key, check.index, amount, check.ttl):
                continue
                task = asyncio.get_running_loop().create_task(self._add(check, amount))
                _background.add(task)
                task.add_done_callback(_background.discard)

    async def _add(self, check: LimitCheck, amount: int) -> None:
        try:
            await self.counters.add(check.key, check.index, amount, check.ttl)
        except StoreUnavailable:
            self.store_failures += 1


_background: set[asyncio.Task[None]] = set()
