"""Compile the policies that apply to a request into one :class:`Chain`, once per snapshot.

Scopes apply from the general to the specific: global -> product -> API -> operation. All
ip-filters, rate limits, quotas and set-header edits of every scope apply; for cors, cache and
timeout the most specific one wins; for request-size-limit the smallest.
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
from tollway.policies.quota import QuotaPolicy
from tollway.policies.ratelimit import RateLimitPolicy
from tollway.policies.registry import BuildContext, build_policy
from tollway.policies.setheader import SetHeaderPolicy
from tollway.policies.sizelimit import RequestSizePolicy
from tollway.policies.timeout import TimeoutPolicy

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

    @property
    def fast_capable(self) -> bool:
        """Whether the callback fast path can run this chain (no body or response buffering)."""
        return not self.jwts and self.cache is None and self.max_body is None

    @property
    def hides_limit_headers(self) -> bool:
        return all(limiter.hide_headers for limiter in self.limiters)


EMPTY_CHAIN = Chain()


def compile_chain(policies: Iterable[Any]) -> Chain:
    cors = cache = None
    timeout: float | None = None
    max_body: int | None = None
    ip_filters: list[IpFilterPolicy] = []
    jwts: list[JwtPolicy] = []
    limiters: list[Limiter] = []
    edits: list[SetHeaderPolicy] = []
    for policy in policies:
        if isinstance(policy, CorsPolicy):
            cors = policy
        elif isinstance(policy, CachePolicy):
            cache = policy
        elif isinstance(policy, TimeoutPolicy):
            timeout = policy.seconds
        elif isinstance(policy, RequestSizePolicy):
            max_body = policy.max_bytes if max_body is None else min(max_body, policy.max_bytes)
        elif isinstance(policy, IpFilterPolicy):
            ip_filters.append(policy)
        elif isinstance(policy, JwtPolicy):
            jwts.append(policy)
        elif isinstance(policy, RateLimitPolicy | QuotaPolicy):
            limiters.append(policy)
        elif isinstance(policy, SetHeaderPolicy):
            edits.append(policy)
    return Chain(
        cors,
        tuple(ip_filters),
        tuple(jwts),
        max_body,
        tuple(limiters),
        cache,
        timeout,
        tuple(edits),
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

    def fast_capable(self, api_id: int, product_ids: Iterable[int]) -> bool:
        """Whether every chain this API can run is fast-path capable."""
        ops = [key for (aid, key) in self.operations if aid == api_id]
        for product in [None, *product_ids]:
            for op in [None, *ops]:
                if not self.chain(api_id, op, product).fast_capable:
                    return False
        return True


EMPTY_POLICIES = PolicySet([], {}, {}, {})
