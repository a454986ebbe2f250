"""Run a request's policy chain: what both the ASGI path and the fast path call.

``Policing.admit`` does everything that needs no waiting (CORS preflight, IP filters, size
limit, limits on the memory store, header edits); ``Policing.settle`` does the rest (JWT
checks, and limits on Redis: one round trip for all of them).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from tollway import problems
from tollway.policies.base import Reject, RequestContext
from tollway.policies.chain import Chain
from tollway.policies.quota import QuotaPolicy
from tollway.policies.ratelimit import LimitSpec
from tollway.stores.base import CounterStore, LimitCheck, LimitState, StoreUnavailable
from tollway.types import Headers

logger = logging.getLogger("tollway.gateway")


@dataclass(slots=True)
class Preflight:
    """A CORS preflight the gateway answers itself (204)."""

    headers: Headers


@dataclass(slots=True)
class Limits:
    """The limit checks of one request; what the headers say about them is in the chain."""

    checks: list[LimitCheck]
    chain: Chain

    @property
    def specs(self) -> tuple[LimitSpec, ...]:
        return self.chain.limit_specs

    @property
    def quotas(self) -> tuple[QuotaPolicy | None, ...]:
        return self.chain.limit_quotas


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
        for edit in self.chain.header_edits:
            headers = edit.edit_response(headers)
        return headers + self.response_headers


def collect_limits(chain: Chain, ctx: RequestContext) -> Limits | None:
    if not chain.limiters:
        return None
    checks: list[LimitCheck] = []
    for limiter in chain.limiters:
        checks += limiter.checks(ctx)
    return Limits(checks, chain)


def limit_headers(limits: Limits, states: list[LimitState]) -> Headers:
    """IETF RateLimit-Policy (every limit) and RateLimit (the one closest to running out)."""
    chain = limits.chain
    if chain.hide_limit_headers:
        return []
    closest = states[0]
    if len(states) > 1:
        closest = min(states, key=lambda state: state.remaining / max(1, state.limit))
    spec = chain.limit_specs[states.index(closest)]
    current = f'"{spec.name}";r={closest.remaining};t={closest.reset}'
    return [(b"ratelimit-policy", chain.limit_policy_header), (b"ratelimit", current.encode())]


def limit_refusal(limits: Limits, states: list[LimitState]) -> Reject:
    over = [
        i
        for i, (check, state) in enumerate(zip(limits.checks, states, strict=True))
        if state.used + check.cost > check.limit
    ] or list(range(len(states)))
    retry = max(states[i].retry_after for i in over)
    headers = [(b"retry-after", str(retry).encode()), *limit_headers(limits, states)]
    quota = next((limits.quotas[i] for i in over if limits.quotas[i] is not None), None)
    if quota is not None:
        return Reject(
            problems.QUOTA_EXCEEDED,
            f"The quota {quota.name!r} is used up; it resets in {retry} s.",
            status=quota.status,
            headers=headers,
            extra={"quota": quota.name},
        )
    name = limits.specs[over[0]].name
    return Reject(
        problems.RATE_LIMITED,
        f"Rate limit {name!r} reached; retry in {retry} s.",
        headers=headers,
        extra={"limit": name},
    )


class Policing:
    """The policy runtime of one gateway: its counter store and failure policy."""

    def __init__(self, counters: CounterStore, *, fail_closed: bool) -> None:
        self.counters = counters
        self.fail_closed = fail_closed
        self.store_failures = 0

    def apply_limits(self, pending: Pending) -> Reject | None:
        """Check limits now if the store can answer without waiting; else leave them pending."""
        limits = pending.limits
        if limits is None:
            return None
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
        return pending.limits is not None or bool(pending.chain.jwts)

    async def settle(self, pending: Pending) -> Reject | None:
        for policy in pending.chain.jwts:
            refused = await policy.check(pending.ctx)
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
            return None  # fail open: the outage is logged once by the store
        return self._judge(limits, result, pending)

    def record_bytes(self, pending: Pending | None, amount: int) -> None:
        """Charge a finished call's body bytes to its byte quotas."""
        if pending is None or amount <= 0:
            return
        for limiter in pending.chain.limiters:
            if isinstance(limiter, QuotaPolicy) and (check := limiter.bytes_check(pending.ctx)):
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
