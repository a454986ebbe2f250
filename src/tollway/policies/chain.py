"""Compile the policies that apply to a request into one :class:`Chain`, once per snapshot.

Scopes apply from the general to the specific: global -> product -> API -> operation. Each
policy kind declares its phase, its slot in the chain and how it merges
(``tollway.policies.phases``): all ip-filters, rate limits, quotas and set-header edits of every
scope apply; for cors, cache, timeout and websocket the most specific one wins; for
request-size-limit the smallest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.policies.cache import CachePolicy
from tollway.policies.cors import CorsPolicy
from tollway.policies.ipfilter import IpFilterPolicy
from tollway.policies.jwt import JwtPolicy
from tollway.policies.kinds import build_policy
from tollway.policies.phases import Merge
from tollway.policies.quota import QuotaPolicy
from tollway.policies.ratelimit import LimitSpec, RateLimitPolicy
from tollway.policies.registry import BuildContext
from tollway.policies.setheader import SetHeaderPolicy
from tollway.policies.timeout import TimeoutPolicy
from tollway.policies.websocket import WebSocketPolicy

Limiter = RateLimitPolicy | QuotaPolicy


@dataclass(frozen=True, slots=True)
class Chain:
    cors: CorsPolicy | None = None
    ip_filters: tuple[IpFilterPolicy, ...] = ()
    jwts: tuple[JwtPolicy, ...] = ()
    max_body: int | None = None
    limiters: tuple[Limiter, ...] = ()
    cache: CachePolicy | None = None
    timeout: float | None = None
    header_edits: tuple[SetHeaderPolicy, ...] = ()
    websocket: WebSocketPolicy | None = None  # an upgraded session's limits
    # Static per chain, so not rebuilt per request: the limits' header specs in check order,
    # the quota behind each (None for rate limits), the RateLimit-Policy value, hide or not.
    limit_specs: tuple[LimitSpec, ...] = ()
    limit_quotas: tuple[QuotaPolicy | None, ...] = ()
    limit_policy_header: bytes = b""
    hide_limit_headers: bool = True


EMPTY_CHAIN = Chain()


def compile_chain(policies: Iterable[Any]) -> Chain:
    """One chain from the policies of every scope (general first), by each kind's declared
    phase, slot and merge rule (``tollway.policies.phases``): no kind is special-cased here."""
    slots: dict[str, Any] = {}
    for policy in sorted(policies, key=lambda policy: policy.phase):  # stable: scopes keep order
        slot, merge = policy.slot, policy.merge
        if merge is Merge.EVERY:
            slots[slot] = (*slots.get(slot, ()), policy)
        elif merge is Merge.MOST_SPECIFIC:
            slots[slot] = policy
        else:  # Merge.SMALLEST
            known = slots.get(slot)
            slots[slot] = policy.value if known is None else min(known, policy.value)
    if isinstance(slots.get("timeout"), TimeoutPolicy):
        slots["timeout"] = slots["timeout"].value
    limiters: tuple[Limiter, ...] = slots.get("limiters", ())
    specs: list[LimitSpec] = []
    quotas: list[QuotaPolicy | None] = []
    for limiter in limiters:
        for spec in limiter.limit_specs():
            specs.append(spec)
            quotas.append(limiter if isinstance(limiter, QuotaPolicy) else None)
    return Chain(
        **slots,
        limit_specs=tuple(specs),
        limit_quotas=tuple(quotas),
        limit_policy_header=", ".join(spec.policy_item() for spec in specs).encode(),
        hide_limit_headers=all(limiter.hide_headers for limiter in limiters),
    )


def build_scope(
    entries: Sequence[dict[str, Any]],
    scope: str,
    named_values: dict[str, str],
    secret_names: frozenset[str],
) -> list[Any]:
    """Build a scope's policies; each gets a uid that is the same in every process."""
    built = []
    for position, entry in enumerate(entries):
        text = json.dumps([scope, position, entry], sort_keys=True)
        uid = hashlib.sha256(text.encode()).hexdigest()[:16]
        context = BuildContext(uid, scope, named_values, secret_names)
        built.append(build_policy(entry, context))
    return built


OperationKey = tuple[str, str]  # (method, template)


class PolicySet:
    """Every scope's built policies, and the chains compiled from them on first use."""

    def __init__(
        self,
        global_: list[Any],
        products: dict[int, list[Any]],
        apis: dict[int, list[Any]],
        operations: dict[tuple[int, OperationKey], list[Any]],
    ) -> None:
        self.global_ = global_
        self.products = products
        self.apis = apis
        self.operations = operations
        self._chains: dict[tuple[int, OperationKey | None, int | None], Chain] = {}

    def chain(self, api_id: int, operation: OperationKey | None, product_id: int | None) -> Chain:
        key = (api_id, operation, product_id)
        found = self._chains.get(key)
        if found is None:
            policies = [*self.global_]
            if product_id is not None:
                policies += self.products.get(product_id, ())
            policies += self.apis.get(api_id, ())
            if operation is not None:
                policies += self.operations.get((api_id, operation), ())
            found = self._chains[key] = compile_chain(policies) if policies else EMPTY_CHAIN
        return found


EMPTY_POLICIES = PolicySet([], {}, {}, {})
