"""Everything a finished call leaves for operators: metrics, the access log line, a span.

:meth:`Observer.call` is called once per API call, by ``Gateway.record_exchange`` (both
transports end there). Metrics are always counted (``recording/metrics.py``); the access log
follows ``TOLLWAY_ACCESS_LOG`` (off, ``true`` for text lines, ``json``); spans are exported
when ``TOLLWAY_OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``recording/spans.py``). Nothing here
names a key or a query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from tollway.gateway.calltrace import CallTrace
from tollway.gateway.recording import accesslog
from tollway.gateway.recording.metrics import POLICY_OF_PROBLEM, MeteredRoute, Meters, Readings
from tollway.gateway.recording.spans import SpanExport
from tollway.settings import Settings

logger = logging.getLogger("tollway.gateway")

SAMPLE_INTERVAL = 1.0  # seconds between readings of the gateway's state for the gauges


class Operation(Protocol):
    method: str
    template: str


class ObservedRoute(MeteredRoute, Protocol):
    """What the recording reads of a route (``gateway.snapshot.state.Route``)."""

    @property
    def prefix(self) -> str: ...
    @property
    def operations(self) -> Any: ...


class Observer:
    """The metrics, access log and span export of one gateway."""

    def __init__(self, settings: Settings) -> None:
        self.meters = Meters()
        self.text_log = settings.access_log is True
        self.json_log = settings.access_log == "json"
        endpoint = settings.otel_exporter_otlp_endpoint
        self.spans = SpanExport(endpoint, settings.otel_service_name) if endpoint else None
        self.detailed = self.json_log or self.spans is not None
        # What the gauges read, set by the composition root (site/compose.py).
        self.probe: Callable[[], Readings] | None = None
        self._sampler: asyncio.Task[None] | None = None

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start reading the gauges every second, and the span thread (on the running loop)."""
        if self.spans is not None:
            self.spans.start()
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_every())

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        self.meters.stopped()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.stop)

    async def _sample_every(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            try:
                self.sample()
            except Exception:
                logger.exception("could not read the gateway's state for metrics")

    def sample(self) -> None:
        if self.probe is not None:
            self.meters.sample(self.probe())

    def exposition(self) -> bytes:
        """``/-/metrics``: this process's state read now, then every metric."""
        self.sample()
        return self.meters.exposition()

    # one call -----------------------------------------------------------------------------------
    def call(
        self,
        route: ObservedRoute,
        subscription_id: int,
        status: int,
        bytes_in: int,
        bytes_out: int,
        latency_ms: float,
        method: str,
        client: str,
        trace: CallTrace | None,
    ) -> None:
        ctx = trace.ctx if trace is not None else None
        grant = ctx.grant if ctx is not None else None
        problem = trace.problem if trace is not None else None
        upstream_s = trace.upstream_s if trace is not None else -1.0
        self.meters.count(
            route,
            grant.product_id if grant is not None else 0,
            status,
            latency_ms / 1000,
            upstream_s,
            bytes_in,
            bytes_out,
            problem,
            ctx.cache if ctx is not None else "",
        )
        if self.text_log:
            accesslog.api_call(client, method, route.prefix, status, latency_ms, subscription_id)
        if not self.detailed or trace is None:
            return
        trace.ensure(ctx.headers if ctx is not None else [])
        operation = _operation(route, method, trace.path)
        product = route.product_names.get(grant.product_id, "") if grant is not None else ""
        rejection = POLICY_OF_PROBLEM.get(problem.slug) if problem is not None else None
        if self.json_log:
            fields: dict[str, object] = {
                "time": accesslog.now_iso(),
                "request_id": trace.request_id.decode(),
                "trace_id": trace.trace_id.decode(),
                "client": client or None,
                "method": accesslog.printable(method.encode("latin-1")),
                "path": accesslog.printable(route.prefix.encode() + trace.path),
                "api": route.name,
                "operation": operation,
                "product": product or None,
                "subscription_id": subscription_id or None,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(latency_ms, 3),
                "upstream_ms": round(upstream_s * 1000, 3) if upstream_s >= 0 else None,
                "rejection": rejection,
                "problem": problem.slug if problem is not None else None,
                "cache": (ctx.cache or None) if ctx is not None else None,
            }
            if trace.websocket is not None:
                code, messages_in, messages_out = trace.websocket
                fields["websocket"] = {
                    "close_code": code,
                    "messages_in": messages_in,
                    "messages_out": messages_out,
                }
            accesslog.api_call_json(fields)
        if self.spans is not None:
            self._span(
                route,
                subscription_id,
                status,
                latency_ms,
                method,
                client,
                trace,
                operation=operation,
                product=product,
                rejection=rejection,
            )

    def _span(
        self,
        route: ObservedRoute,
        subscription_id: int,
        status: int,
        latency_ms: float,
        method: str,
        client: str,
        trace: CallTrace,
        *,
        operation: str | None,
        product: str,
        rejection: str | None,
    ) -> None:
        assert self.spans is not None
        end = time.time_ns()
        attributes: dict[str, Any] = {
            "tollway.api": route.name,
            "tollway.request_id": trace.request_id.decode(),
            "http.request.method": method,
            "http.response.status_code": status,
            "url.path": accesslog.printable(route.prefix.encode() + trace.path),
        }
        if client:
            attributes["client.address"] = client
        if operation:
            attributes["tollway.operation"] = operation
        if product:
            attributes["tollway.product"] = product
        if subscription_id:
            attributes["tollway.subscription_id"] = subscription_id
        if rejection:
            attributes["tollway.rejection"] = rejection
        if trace.problem is not None:
            attributes["tollway.problem"] = trace.problem.slug
        parent = int(trace.parent_id, 16) if trace.parent_id else None
        self.spans.add(
            (
                int(trace.trace_id, 16),
                int(trace.span_id, 16),
                parent,
                int(trace.flags, 16),
                operation or f"{method} {route.prefix}",
                end - int(latency_ms * 1_000_000),
                end,
                attributes,
                status >= 500,
            )
        )


def _operation(route: ObservedRoute, method: str, path: bytes) -> str | None:
    """The API operation a call matched (``GET /items/{id}``), when the API lists them."""
    if route.operations is None:
        return None
    found = route.operations.find(method, path)
    return None if found is None else f"{found.method} {found.template}"
