"""rate-limit and quota at request time: the checks of one request, the refusal (429, or the
quota's status) and the IETF ``RateLimit-Policy``/``RateLimit`` headers, whatever the store.

The gateway's ``Policing`` sends the checks to the counter store (one round trip for all of a
request's limits) and hands the answer to :func:`limit_refusal` / :func:`limit_headers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway import problems
from tollway.policies.base import Reject, RequestContext
from tollway.policies.chain import Chain
from tollway.policies.quota import QuotaPolicy
from tollway.policies.ratelimit import LimitSpec
from tollway.stores.base import LimitCheck, LimitState
from tollway.types import Headers


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


def collect_limits(chain: Chain, ctx: RequestContext) -> Limits | None:
    if not chain.limit_checks_hooks:
        return None
    return Limits(chain.limit_checks(ctx), chain)


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
