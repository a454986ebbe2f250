"""The exchange core: what an API call means once it is routed, whatever the transport.

One :class:`ApiExchange` per routed call decides everything: admission (``Gateway.admit``),
the awaited policy work and the cache lookup (:meth:`~ApiExchange.settle`), which gives an
*answer now* (a refusal, a CORS preflight, a cache hit: an :data:`Answer`) or *forward*; the
request the backend gets; the response head the client gets (hop-by-hop headers dropped,
``Location`` moved under the API's prefix, the cache's capture, set-header/CORS/RateLimit edits);
body accounting (the streamed request-size limit, the capture); the stale-connection replay
rule; what an upstream failure becomes (504/502 problem, a cut-short response, 499 for a client
that left); and the end: byte quotas, then **one** recording call, ``Gateway.record_exchange``,
with the exchange itself as the record (status, bytes, latency, and its ``CallTrace``: request
id, upstream time, the problem the gateway answered with).

The core does no I/O. The two transports subclass it and only move bytes: the fast transport
(``gateway.transport.fastpath.FastExchange``, parser callbacks) and the ASGI transport
(``gateway.exchange.asgi``, ASGI messages). It is a ``__slots__`` object of plain methods, so
the fast transport's hot path stays a few calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from tollway import problems
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.exchange.policing import Pending, Policing, Preflight
from tollway.gateway.snapshot.state import GatewayState, Route
from tollway.gateway.upstream.backends import (
    CLIENT_CLOSED,
    NOT_PASSED_BACK,
    REPLAY_LIMIT,
    BodyFraming,
    UpstreamRequest,
    replayable,
)
from tollway.gateway.upstream.client import (
    NoTargetAvailable,
    StaleConnection,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.gateway.upstream.pool import backend_unavailable
from tollway.policies.base import Reject
from tollway.policies.cache import CacheCapture, hit_answer
from tollway.stores.base import CachedResponse, CacheStore
from tollway.types import Headers, Scope

logger = logging.getLogger("tollway.gateway")

Answer = tuple[int, Headers, bytes]
"""A complete response the gateway gives itself: status, headers (with Content-Length), body."""


@dataclass(slots=True)
class Admission:
    """A request the gateway lets through, with what the backend should receive."""

    subscription_id: int
    headers: Headers
    host: bytes
    framing: int
    query: bytes
    pending: Pending | None = None  # policy work left, and headers for the response
    client_ip: str = ""  # the client's address, through trusted proxies (for the access log)
    max_body: int = 0  # the largest body forwarded: a request-size-limit, else the default


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal that is attributed to a subscription (its usage is recorded against it)."""

    problem: problems.ProblemType | Reject
    subscription_id: int


Outcome = Admission | Denied | problems.ProblemType | Reject | Preflight


def refusal(outcome: problems.ProblemType | Denied | Reject) -> tuple[Reject, int]:
    """The refusal to send, and the subscription its usage is recorded against."""
    if isinstance(outcome, Denied):
        inner = outcome.problem
        return (inner if isinstance(inner, Reject) else Reject(inner)), outcome.subscription_id
    if isinstance(outcome, Reject):
        return outcome, 0
    return Reject(outcome), 0


def body_too_large(size: int | None, limit: int) -> Reject:
    """413 for a body over ``limit`` (``size`` when the client announced it)."""
    told = f"The body has {size} bytes; " if size is not None else "The body is too large; "
    return Reject(problems.REQUEST_TOO_LARGE, f"{told}this API accepts at most {limit}.")


class Gateway(Protocol):
    """What the core uses of the :class:`~.gateway.Gateway` (no import cycle)."""

    state: GatewayState
    policing: Policing
    cache_store: CacheStore

    def admit(
        self,
        route: Route,
        method: str,
        rest: bytes,
        headers: Headers,
        query: bytes,
        peer: str,
        scheme: str,
        trace: CallTrace,
    ) -> Outcome: ...

    def record_exchange(self, exchange: ApiExchange) -> None: ...


class ApiExchange:
    """One routed API call: every decision after routing; the transports move the bytes.

    Read by the recording call as the record of the whole exchange: ``route``, ``method``,
    ``subscription_id``, ``status`` (499 when the client left, the head's status when the
    response was cut short), ``bytes_in``/``bytes_out``, ``latency_ms``, ``peer`` (the client,
    through trusted proxies when known), ``rejected`` (the refusal or 502/503/504 the gateway
    answered with instead of the backend; None otherwise) and ``trace`` (``gateway/calltrace.py``:
    request id, trace context, upstream time, the problem, the policies' context).
    """

    __slots__ = (
        "admission",
        "body_complete",
        "bytes_in",
        "bytes_out",
        "cache_key",
        "capture",
        "framing",
        "gateway",
        "head_timeout",
        "latency_ms",
        "max_body",
        "method",
        "peer",
        "policy",
        "rejected",
        "replayed",
        "request_headers",
        "route",
        "started",
        "status",
        "subscription_id",
        "too_large",
        "trace",
    )

    def __init__(
        self,
        gateway: Gateway,
        route: Route,
        method: str,
        peer: tuple[str, int] | None,
        trace: CallTrace,
    ) -> None:
        self.started = time.perf_counter()
        self.trace = trace  # request id, trace context, upstream time, the gateway's problem
        self.gateway = gateway
        self.route = route
        self.method = method
        self.peer: tuple[str, int] | str | None = peer
        self.request_headers: Headers = []
        self.admission: Admission | None = None
        self.policy: Pending | None = None  # the chain's work for this request, if any
        self.subscription_id = 0
        self.framing = BodyFraming.NONE
        self.max_body = 0
        self.head_timeout: float | None = None  # the timeout policy: forwarding -> head
        self.cache_key: str | None = None
        self.capture: CacheCapture | None = None  # a GET miss, kept to be stored
        self.status = 0  # 0 until the response head (or the gateway's answer) is decided
        self.bytes_in = 0
        self.bytes_out = 0
        self.body_complete = False  # the client's whole request body is in
        self.too_large = False  # a streamed body crossed the size limit
        self.replayed = False
        self.latency_ms = 0.0
        self.rejected: Reject | None = None

    # before forwarding ------------------------------------------------------------------------
    def admit_request(
        self, rest: bytes, headers: Headers, query: bytes, scheme: str
    ) -> Answer | None:
        """Admission; an answer to give now (preflight, refusal), or None to go on."""
        self.request_headers = headers
        peer = self.peer
        outcome = self.gateway.admit(
            self.route,
            self.method,
            rest,
            headers,
            query,
            peer[0] if isinstance(peer, tuple) else "",
            scheme,
            self.trace,
        )
        if isinstance(outcome, Admission):
            self.admission = outcome
            self.subscription_id = outcome.subscription_id
            if outcome.client_ip:
                self.peer = outcome.client_ip
            self.framing = outcome.framing
            self.max_body = outcome.max_body
            pending = outcome.pending
            if pending is not None:
                self.policy = pending
                chain = pending.chain
                self.head_timeout = chain.timeout
                if chain.cache is not None:
                    self.cache_key = chain.cache.key(pending.ctx, outcome.query)
            return None
        if isinstance(outcome, Preflight):
            self.status = 204
            return 204, [(b"content-length", b"0"), *outcome.headers], b""
        reject, self.subscription_id = refusal(outcome)
        return self.refusal_answer(reject)

    def must_settle(self) -> bool:
        """Whether policy work needs awaiting (validate-jwt, limits on Redis, a cache lookup)."""
        policy = self.policy
        if policy is None:
            return False
        return self.cache_key is not None or self.gateway.policing.needs_settling(policy)

    async def settle(self) -> Answer | None:
        """The awaited policy work, the request edits that depend on it (claims to headers),
        then the cache lookup (a refused call is never answered from the cache): an answer
        to give now (refusal, cache hit), or None to forward."""
        policy, admission = self.policy, self.admission
        assert policy is not None
        assert admission is not None
        refused = await self.gateway.policing.settle(policy)
        if refused is not None:
            return self.refusal_answer(refused)
        key, cache = self.cache_key, policy.chain.cache
        if key is not None and cache is not None:
            hit = await cache.lookup(self.gateway.cache_store, policy.ctx, key)
            if hit is not None:
                return self.cached_answer(hit)
            self.capture = cache.capture(policy.ctx, key)
        return None

    def forwarded_headers(self) -> Headers:
        """The request headers the backend gets: the chain's request edits (claims to headers,
        set-header) on the admitted headers. Once per exchange, when it is forwarded."""
        admission = self.admission
        assert admission is not None
        policy = self.policy
        if policy is not None and policy.chain.edit_request_hooks:
            admission.headers = policy.chain.edit_request(admission.headers, policy.ctx)
        return admission.headers

    def upstream_request(self, rest: bytes, scope: Scope) -> UpstreamRequest:
        """What the backend gets (the timeout policy bounds the wait for its response head)."""
        headers = self.forwarded_headers()
        admission = self.admission
        assert admission is not None
        return UpstreamRequest(
            self.method,
            rest,
            admission.query,
            headers,
            admission.host,
            admission.framing,
            scope,
            self.route.prefix_bytes,
            self.head_timeout,
            self.trace,
        )

    # the gateway's own answers ----------------------------------------------------------------
    def refusal_answer(self, reject: Reject) -> Answer:
        """A problem+json answer, with CORS headers so browser code can read why."""
        status = reject.status or reject.problem.status
        body = problems.problem_body(reject.problem, reject.detail, status=status, **reject.extra)
        headers = [
            (b"content-type", problems.PROBLEM_CONTENT_TYPE),
            (b"content-length", str(len(body)).encode()),
            *reject.headers,
        ]
        base = self.gateway.state.policies.chain(self.route.api_id, None, None)
        if base.response_headers_hooks:
            headers += base.response_headers(self.request_headers)
        self.status, self.rejected = status, reject
        self.trace.problem = reject.problem
        return status, headers, body

    def cached_answer(self, hit: CachedResponse) -> Answer:
        """Answer from the cache: recorded as the hit's status, nothing in, the body out."""
        headers, body = hit_answer(hit, self.method, time.time())
        self.status, self.bytes_out = hit.status, len(body)
        if self.policy is not None:
            headers = self.policy.edit_response(headers)
        return hit.status, headers, body

    # the response -----------------------------------------------------------------------------
    def client_head(self, status: int, headers: Headers) -> Headers:
        """The backend's response head as the client gets it: hop-by-hop headers dropped,
        ``Location`` moved under the API's prefix, marked and kept by the cache's capture,
        then the chain's edits (set-header, CORS, RateLimit)."""
        self.status = status
        clean: Headers = []
        for name, value in headers:
            if name in NOT_PASSED_BACK:
                continue
            if name == b"location":
                relocate = getattr(self.route.backend, "client_location", None)
                if relocate is not None:
                    value = relocate(value, self.route.prefix_bytes)
            clean.append((name, value))
        capture = self.capture
        if capture is not None:
            clean = capture.begin(status, clean)
        policy = self.policy
        if policy is not None:
            clean = policy.edit_response(clean)
            if policy.chain.edit_response_hooks:  # (an edit cannot add a hop-by-hop header)
                clean = [(n, v) for n, v in clean if n not in NOT_PASSED_BACK]
        return clean

    def body_in(self, size: int) -> bool:
        """Count a piece of the request body; False once it crosses the size limit (only a
        streamed body can: a declared length over it was refused at admission)."""
        self.bytes_in += size
        if self.bytes_in > self.max_body:
            self.too_large = True
            return False
        return True

    def body_out(self, data: bytes) -> None:
        """Count a piece of the response body, and keep it for the cache while it may be."""
        self.bytes_out += len(data)
        if self.capture is not None:
            self.capture.feed(data)

    def body_over_limit(self) -> Answer | None:
        """The request body crossed the limit: the backend loses the connection; the client
        gets a 413 (and the connection is closed: the rest of the body is still coming), or,
        when the response had already started, just the closed connection."""
        if self.status:
            return None
        return self.refusal_answer(body_too_large(None, self.max_body))

    # the stale-connection replay rule ---------------------------------------------------------
    def keep_for_replay(self) -> bool:
        """Whether the body sent so far is still small enough to keep for a replay."""
        return self.bytes_in <= REPLAY_LIMIT

    def may_replay(self, error: UpstreamError) -> bool:
        """Replay once on a fresh connection when a pooled one turned out to be closed before
        anything came back, and the request has no body or its body was complete and at most
        ``REPLAY_LIMIT`` bytes (larger or still-streaming bodies may be gone)."""
        if self.replayed or not isinstance(error, StaleConnection):
            return False
        if not replayable(self.framing, self.body_complete, self.bytes_in):
            return False
        self.replayed = True
        return True

    # failures ---------------------------------------------------------------------------------
    def failure_answer(self, error: UpstreamError) -> Answer:
        """The backend failed before the response started: 503 when every target of its pool
        is out of rotation, 504 for a timeout, else 502."""
        if isinstance(error, NoTargetAvailable):
            return self.refusal_answer(backend_unavailable(error))
        logger.warning("api %s: %s", self.route.name, error)
        timeout = isinstance(error, UpstreamTimeout)
        problem = problems.BACKEND_TIMEOUT if timeout else problems.BACKEND_UNREACHABLE
        return self.refusal_answer(Reject(problem))

    def cut_short(self, error: BaseException) -> None:
        """The backend failed after the head went out: the client connection is cut, usage
        records the status the client received."""
        logger.warning("api %s: response cut short: %s", self.route.name, error)

    def client_left(self) -> None:
        """The client went away before the response was complete: recorded as 499."""
        self.status = CLIENT_CLOSED

    # the end ----------------------------------------------------------------------------------
    def store_response(self) -> Coroutine[Any, Any, None] | None:
        """The cache store of a complete, storable response (for the transport to run)."""
        capture = self.capture
        if capture is None or not capture.storable:
            return None
        return capture.finish(self.gateway.cache_store)

    def end(self) -> None:
        """Charge byte quotas, then the one recording call (usage, access log, metrics)."""
        policy = self.policy
        if policy is not None and policy.chain.byte_checks_hooks:
            self.gateway.policing.record_bytes(policy, self.bytes_in + self.bytes_out)
        self.latency_ms = (time.perf_counter() - self.started) * 1000
        self.gateway.record_exchange(self)
