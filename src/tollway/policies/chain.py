"""Compile the policies that apply to a request into one :class:`Chain`, once per snapshot.

Scopes apply from the general to the specific: global -> product -> API -> operation. Each
policy kind declares its phase, its merge slot and how it merges (``tollway.policies.phases``):
all ip-filters, rate limits, quotas, validate-jwts and set-header edits of every scope apply;
for cors, cache, timeout and websocket the most specific one wins; for request-size-limit the
smallest.
The chain keeps, for every hook of ``phases.HOOKS``, the bound methods of the policies that
implement it, in phase order, and runs them (:meth:`Chain.check_access` and the others): no
policy kind is special-cased here or in the gateway.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tollway.policies.base import Reject, RequestContext
from tollway.policies.cache import CachePolicy
from tollway.policies.kinds import build_policy
from tollway.policies.phases import HOOKS, Merge
from tollway.policies.quota import QuotaPolicy
from tollway.policies.ratelimit import LimitSpec
from tollway.policies.registry import BuildContext
from tollway.policies.websocket import WebSocketPolicy
from tollway.stores.base import LimitCheck
from tollway.types import Headers

# the slots whose winner the chain keeps as a value (single-valued kinds)
SETTINGS = ("cache", "max_body", "timeout", "websocket")


@dataclass(frozen=True, slots=True)
class Chain:
    """A route's policies, compiled: per hook, the policies' bound methods in phase order (run
    by the methods below), and the settings of the single-valued kinds."""

    answer_preflight_hooks: tuple[Callable[[RequestContext], Headers | Reject | None], ...] = ()
    check_access_hooks: tuple[Callable[[RequestContext], Reject | None], ...] = ()
    authenticate_hooks: tuple[Callable[[RequestContext], Awaitable[Reject | None]], ...] = ()
    limit_checks_hooks: tuple[Callable[[RequestContext], list[LimitCheck]], ...] = ()
    edit_request_hooks: tuple[Callable[[Headers, RequestContext], Headers], ...] = ()
    edit_response_hooks: tuple[Callable[[Headers], Headers], ...] = ()
    response_headers_hooks: tuple[Callable[[Headers], Headers], ...] = ()
    byte_checks_hooks: tuple[Callable[[RequestContext], list[LimitCheck]], ...] = ()
    # settings: request-size-limit (BODY), cache (CACHE), timeout (FORWARD), websocket (SESSION)
    max_body: int | None = None
    cache: CachePolicy | None = None
    timeout: float | None = None
    websocket: WebSocketPolicy | None = None  # an upgraded session's limits (SESSION)
    # Static per chain, so not rebuilt per request: the limits' header specs in check order,
    # the quota behind each (None for rate limits), the RateLimit-Policy value, hide or not.
    limit_specs: tuple[LimitSpec, ...] = ()
    limit_quotas: tuple[QuotaPolicy | None, ...] = ()
    limit_policy_header: bytes = b""
    hide_limit_headers: bool = True

    def answer_preflight(self, ctx: RequestContext) -> Headers | Reject | None:
        """PREFLIGHT: the headers of a 204 answer, a refusal, or None (not a preflight)."""
        for hook in self.answer_preflight_hooks:
            if (answer := hook(ctx)) is not None:
                return answer
        return None

    def check_access(self, ctx: RequestContext) -> Reject | None:
        """ACCESS: the first refusal, or None."""
        for hook in self.check_access_hooks:
            if (refused := hook(ctx)) is not None:
                return refused
        return None

    async def authenticate(self, ctx: RequestContext) -> Reject | None:
        """AUTHENTICATE (awaited): the first refusal, or None."""
        for hook in self.authenticate_hooks:
            if (refused := await hook(ctx)) is not None:
                return refused
        return None

    def limit_checks(self, ctx: RequestContext) -> list[LimitCheck]:
        """LIMITS: every counter this request takes (checked in one store round trip)."""
        checks: list[LimitCheck] = []
        for hook in self.limit_checks_hooks:
            checks += hook(ctx)
        return checks

    def edit_request(self, headers: Headers, ctx: RequestContext) -> Headers:
        """The request headers the backend gets (after AUTHENTICATE: claims are known)."""
        for hook in self.edit_request_hooks:
            headers = hook(headers, ctx)
        return headers

    def edit_response(self, headers: Headers) -> Headers:
        """The response head the client gets (the backend's, or a cache hit's)."""
        for hook in self.edit_response_hooks:
            headers = hook(headers)
        return headers

    def response_headers(self, request: Headers) -> Headers:
        """Headers added to every answer to this request, the gateway's refusals included."""
        out: Headers = []
        for hook in self.response_headers_hooks:
            out += hook(request)
        return out

    def byte_checks(self, ctx: RequestContext) -> list[LimitCheck]:
        """The counters a finished call's body bytes are added to (byte quotas)."""
        checks: list[LimitCheck] = []
        for hook in self.byte_checks_hooks:
            checks += hook(ctx)
        return checks


EMPTY_CHAIN = Chain()


def compile_chain(policies: Iterable[Any]) -> Chain:
    """One chain from the policies of every scope (general first), by each kind's declared
    phase, slot and merge rule and the hooks it implements (``tollway.policies.phases``)."""
    ordered = sorted(policies, key=lambda policy: policy.phase)  # stable: scopes keep order
    slots: dict[str, Any] = {}
    for policy in ordered:
        slot, merge = policy.slot, policy.merge
        if merge is Merge.EVERY:
            slots[slot] = (*slots.get(slot, ()), policy)
        elif merge is Merge.MOST_SPECIFIC:
            slots[slot] = policy
        else:  # Merge.SMALLEST
            known = slots.get(slot)
            slots[slot] = policy if known is None or policy.value < known.value else known
    chosen = {
        id(policy)
        for merged in slots.values()
        for policy in (merged if isinstance(merged, tuple) else (merged,))
    }
    acting = [policy for policy in ordered if id(policy) in chosen]
    hooks: dict[str, Any] = {}
    for name in HOOKS:
        bound = (getattr(policy, name, None) for policy in acting)
        hooks[f"{name}_hooks"] = tuple(method for method in bound if method is not None)
    settings = {
        name: getattr(slots[name], "value", slots[name]) for name in SETTINGS if name in slots
    }
    limiters = [policy for policy in acting if hasattr(policy, "limit_specs")]
    specs: list[LimitSpec] = []
    quotas: list[QuotaPolicy | None] = []
    for limiter in limiters:
        for spec in limiter.limit_specs():
            specs.append(spec)
            quotas.append(limiter if isinstance(limiter, QuotaPolicy) else None)
    return Chain(
        **hooks,
        **settings,
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
