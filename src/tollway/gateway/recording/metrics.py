"""Prometheus metrics (the official ``prometheus-client``), served at ``/-/metrics``.

Counting costs the hot path a few attribute reads and the client's own increments: the
labelled children of an API (``.labels(...)``) are made once, on its first call, and kept in a
dict keyed by the API's id (per product and status class for ``tollway_requests_total``); a call
never builds label strings. No label names a key or subscription (unbounded cardinality; usage
analytics has those). State that is not a count (config version, usage buffer, connection
pools, limits-store failures) is read from the gateway by :meth:`Meters.sample`, every second
and before every scrape.

With ``tollway serve --workers N`` the server gives every worker the same
``PROMETHEUS_MULTIPROC_DIR`` (``tollway.server``): each worker writes its numbers to its own
files there and a scrape, whichever worker answers it, adds them all up
(prometheus-client's multiprocess mode). A worker that stops takes its gauges out of the sums;
its counts stay. Every metric is listed in docs/observability.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from tollway import problems

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# No ``*_created`` series: they double the exposition, and multiprocess mode has none anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds; from a cache hit (well under 1 ms) to a slow backend.
BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# The policy that refused a call, from the problem type of its answer.
POLICY_OF_PROBLEM: dict[str, str] = {
    problems.RATE_LIMITED.slug: "rate-limit",
    problems.QUOTA_EXCEEDED.slug: "quota",
    problems.IP_FORBIDDEN.slug: "ip-filter",
    problems.INVALID_TOKEN.slug: "validate-jwt",
    problems.REQUEST_TOO_LARGE.slug: "request-size-limit",
    problems.MISSING_KEY.slug: "key",
    problems.INVALID_KEY.slug: "key",
    problems.FORBIDDEN_API.slug: "access",
    problems.CORS_FORBIDDEN.slug: "cors",
    problems.LIMITS_UNAVAILABLE.slug: "limits-store",
}
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


class MeteredRoute(Protocol):
    """What the metrics read of a route (``gateway.snapshot.state.Route``)."""

    @property
    def api_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def product_names(self) -> dict[int, str]: ...


@dataclass(slots=True)
class Readings:
    """The gateway's state, as :meth:`Meters.sample` publishes it."""

    config_version: int = 0
    config_age_seconds: float = 0.0
    usage_buffered_rows: int = 0
    usage_dropped_calls: int = 0
    limits_store_errors: int = 0
    limits_fail_open: int = 0
    # backend, target, open, idle
    pools: list[tuple[str, str, int, int]] = field(default_factory=list)


class _RouteMeters:
    """One API's labelled children, made once."""

    __slots__ = (
        "cache",
        "duration",
        "name",
        "received",
        "rejections",
        "requests",
        "sent",
        "upstream",
    )

    def __init__(self, meters: Meters, route: MeteredRoute) -> None:
        api = route.name
        self.name = api
        self.requests: dict[int, Counter] = {}  # product id * 8 + status class -> child
        self.duration = meters.duration.labels(api)
        self.upstream = meters.upstream.labels(api)
        self.received = meters.bytes.labels(api, "in")
        self.sent = meters.bytes.labels(api, "out")
        self.rejections: dict[str, Counter] = {}
        self.cache: dict[str, Counter] = {}


class Meters:
    """The gateway's metrics: counted by :meth:`count`, exposed by :meth:`exposition`."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        # (In multiprocess mode values live in the worker's files, read back by the collector.)
        registry = None if self.multiprocess else self.registry
        self.requests = Counter(
            "tollway_requests",
            "API calls answered, by API, product and status class.",
            ["api", "product", "status_class"],
            registry=registry,
        )
        self.duration = Histogram(
            "tollway_request_duration_seconds",
            "Time from the request's head in to the response done, per API.",
            ["api"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.upstream = Histogram(
            "tollway_upstream_duration_seconds",
            "Time from forwarding to the backend's response head, per API.",
            ["api"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.rejections = Counter(
            "tollway_policy_rejections",
            "Calls refused by the gateway, by API and policy.",
            ["api", "policy"],
            registry=registry,
        )
        self.cache = Counter(
            "tollway_cache_requests",
            "Calls to APIs with a cache policy, by result (hit, miss, bypass).",
            ["api", "result"],
            registry=registry,
        )
        self.bytes = Counter(
            "tollway_bytes",
            "Body bytes received from clients (in) and sent to them (out), per API.",
            ["api", "direction"],
            registry=registry,
        )
        self.store_errors = Counter(
            "tollway_limits_store_errors",
            "Calls to the limits store (Redis) that failed.",
            registry=registry,
        )
        self.store_decisions = Counter(
            "tollway_limits_store_decisions",
            "Calls decided without the limits store: let through (fail-open) or refused "
            "(fail-closed).",
            ["decision"],
            registry=registry,
        )
        self.config_version = Gauge(
            "tollway_config_version",
            "The change-log position of the loaded configuration snapshot (lowest worker).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.config_age = Gauge(
            "tollway_config_age_seconds",
            "Seconds since the snapshot was last confirmed current with the store (oldest worker).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.usage_rows = Gauge(
            "tollway_usage_buffer_rows",
            "Usage rows held in memory, waiting to be written.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.usage_dropped = Counter(
            "tollway_usage_dropped_calls",
            "Calls whose usage was dropped because the buffer was full.",
            registry=registry,
        )
        self.pool = Gauge(
            "tollway_upstream_connections",
            "Connections to each target of HTTP backends, open (in use or idle) and idle in the "
            "pool.",
            ["backend", "target", "state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.fail_closed = self.store_decisions.labels("fail-closed")
        self.fail_open = self.store_decisions.labels("fail-open")
        self._routes: dict[int, _RouteMeters] = {}
        self._last = Readings()
        self._pools: set[tuple[str, str]] = set()

    # the hot path -------------------------------------------------------------------------------
    def count(
        self,
        route: MeteredRoute,
        product_id: int,
        status: int,
        duration_s: float,
        upstream_s: float,
        bytes_in: int,
        bytes_out: int,
        problem: problems.ProblemType | None,
        cache: str,
    ) -> None:
        meters = self._routes.get(route.api_id)
        if meters is None or meters.name is not route.name:
            meters = self._routes[route.api_id] = _RouteMeters(self, route)
        slot = product_id * 8 + status // 100
        requests = meters.requests.get(slot)
        if requests is None:
            requests = meters.requests[slot] = self._requests_child(route, product_id, status)
        requests.inc()
        if status != 101:  # (a WebSocket session's length is not a latency)
            meters.duration.observe(duration_s)
        if upstream_s >= 0:
            meters.upstream.observe(upstream_s)
        if bytes_in:
            meters.received.inc(bytes_in)
        if bytes_out:
            meters.sent.inc(bytes_out)
        refused = problem is not None and self._rejected(meters, problem)
        if cache and not refused:  # (a refused call never reached the cache)
            child = meters.cache.get(cache)
            if child is None:
                child = meters.cache[cache] = self.cache.labels(route.name, cache)
            child.inc()

    def _requests_child(self, route: MeteredRoute, product_id: int, status: int) -> Counter:
        product = route.product_names.get(product_id, "")
        status_class = STATUS_CLASSES[status // 100] if 0 <= status < 600 else "5xx"
        return self.requests.labels(route.name, product, status_class)

    def _rejected(self, meters: _RouteMeters, problem: problems.ProblemType) -> bool:
        """Count a policy's refusal; False for the gateway's other answers (backend timeout,
        unknown operation), which no policy made."""
        policy = POLICY_OF_PROBLEM.get(problem.slug)
        if policy is None:
            return False
        child = meters.rejections.get(policy)
        if child is None:
            child = meters.rejections[policy] = self.rejections.labels(meters.name, policy)
        child.inc()
        if problem is problems.LIMITS_UNAVAILABLE:
            self.fail_closed.inc()
        return True

    # state --------------------------------------------------------------------------------------
    def sample(self, readings: Readings) -> None:
        """Publish the gateway's state (counts that grow are added as differences)."""
        last = self._last
        self.config_version.set(readings.config_version)
        self.config_age.set(readings.config_age_seconds)
        self.usage_rows.set(readings.usage_buffered_rows)
        _add(self.usage_dropped, readings.usage_dropped_calls - last.usage_dropped_calls)
        _add(self.store_errors, readings.limits_store_errors - last.limits_store_errors)
        _add(self.fail_open, readings.limits_fail_open - last.limits_fail_open)
        seen = set()
        for backend, target, open_, idle in readings.pools:
            seen.add((backend, target))
            self.pool.labels(backend, target, "open").set(open_)
            self.pool.labels(backend, target, "idle").set(idle)
        for backend, target in self._pools - seen:  # (no longer configured)
            self.pool.labels(backend, target, "open").set(0)
            self.pool.labels(backend, target, "idle").set(0)
        self._pools = seen
        self._last = readings

    def stopped(self) -> None:
        """This worker stops: its gauges leave the sums (its counts stay in the totals)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        """The text exposition of every metric (of all workers, in multiprocess mode)."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _add(counter: Counter, amount: float) -> None:
    if amount > 0:
        counter.inc(amount)
