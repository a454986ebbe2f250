"""The order in which policies act on a request, declared once (Kong's plugin priorities are
the model), the hooks a policy kind implements to take part, and how several policies of one
kind from different scopes combine.

A policy class names its ``phase`` (its place in the order), its merge ``slot`` and how it
``merge``\\ s with others of its kind, and implements the :data:`HOOKS` it takes part in (plain
methods with those names). ``tollway.policies.chain.compile_chain`` turns a route's policies
into a :class:`~tollway.policies.chain.Chain` once per snapshot: for each hook, the bound
methods of the policies that implement it, in phase order. The gateway's exchange core calls the
chain's runners at the points below, on both transports, and never names a policy kind:

=============  ====================  =======================================================
phase          policy kinds          what happens (hook)
=============  ====================  =======================================================
PREFLIGHT      cors                  an ``OPTIONS`` preflight is answered (204), no key needed
                                     (``answer_preflight``)
ACCESS         ip-filter             403 for addresses outside the filter (API scope before
                                     the key is checked, product scope after)
                                     (``check_access``)
(key)          -                     401/403: the subscription key and product access
AUTHENTICATE   validate-jwt          401 for a missing or invalid token (``authenticate``,
                                     awaited); claims to headers (``edit_request``)
BODY           request-size-limit    413 for a declared length over the limit (and as a
                                     chunked body crosses it) (the chain's ``max_body``)
LIMITS         rate-limit, quota     one store round trip for all of them; 429/403 and
                                     RateLimit headers (``limit_checks``; byte quotas are
                                     charged at the end: ``byte_checks``)
CACHE          cache                 a hit is answered by the gateway; a miss is stored
                                     (the chain's ``cache``)
REQUEST_EDIT   set-header            request headers for the backend (``edit_request``)
FORWARD        timeout               the wait for the backend's response head (the chain's
                                     ``timeout``)
SESSION        websocket             limits of an upgraded WebSocket session (idle, size,
                                     lifetime, message rate): close codes, not answers (the
                                     chain's ``websocket``)
=============  ====================  =======================================================

On the response: ``edit_response`` (set-header), then ``response_headers`` (CORS; also on the
gateway's refusals) and the RateLimit headers, the cache store, then recording (usage, byte
quotas, access log). Within one hook, policies run in phase order, general scopes first.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class Phase(IntEnum):
    """When a policy acts; lower runs first."""

    PREFLIGHT = 10
    ACCESS = 20
    AUTHENTICATE = 30
    BODY = 40
    LIMITS = 50
    CACHE = 60
    REQUEST_EDIT = 70
    FORWARD = 80
    SESSION = 90


HOOKS: dict[str, str] = {
    # hook name (a policy's method) -> what it is called with and returns
    "answer_preflight": "(ctx) -> headers of a 204 answer | Reject | None: an OPTIONS preflight",
    "check_access": "(ctx) -> Reject | None: before the key (API scope), again after it",
    "authenticate": "async (ctx) -> Reject | None: awaited before the limits",
    "limit_checks": "(ctx) -> list[LimitCheck]: the counters this request takes",
    "edit_request": "(headers, ctx) -> headers: what the backend gets, just before forwarding",
    "edit_response": "(headers) -> headers: the response head the client gets",
    "response_headers": "(request headers) -> headers added to every answer, refusals too",
    "byte_checks": "(ctx) -> list[LimitCheck]: counters a finished call's bytes are added to",
}
"""The hooks, in the order the exchange core calls them. A policy takes part in a hook by
defining a method of that name; :func:`tollway.policies.chain.compile_chain` finds them."""


class Merge(Enum):
    """How policies of one kind from several scopes (global -> product -> API -> operation)
    combine into one chain slot."""

    EVERY = "every"  # all of them apply, general scopes first
    MOST_SPECIFIC = "most-specific"  # the most specific scope's policy wins
    SMALLEST = "smallest"  # the smallest ``value`` wins (limits that only tighten)
