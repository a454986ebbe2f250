"""One OpenTelemetry span per API call, exported over OTLP/HTTP (protobuf) in batches.

On when ``TOLLWAY_OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the collector's base URL, as
``OTEL_EXPORTER_OTLP_ENDPOINT``: spans go to ``<endpoint>/v1/traces``). A call only appends a
tuple to a bounded queue; a thread turns the tuples into spans with the OpenTelemetry SDK and
its ``BatchSpanProcessor`` exports them, so the event loop never waits for the collector. When
the queue is full (the collector is far behind), the oldest calls' spans are dropped.

A span carries the ids the backend saw in ``traceparent`` (``gateway/calltrace.py``): its span id
is the backend's parent, its parent the client's span when the client sent one. The SDK's
``IdGenerator`` is the documented way to choose ids; the thread sets the ids of each span just
before making it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

logger = logging.getLogger("tollway.tracing")

QUEUE_LIMIT = 20_000
EXPORT_DELAY_MS = 1000  # the batch processor's schedule delay

# (trace id, span id, parent span id or None, flags, name, start ns, end ns, attributes, error)
SpanData = tuple[int, int, int | None, int, str, int, int, dict[str, Any], bool]


class _ChosenIds(IdGenerator):
    """Ids decided before the span is made (they were sent to the backend already)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def traces_url(endpoint: str) -> str:
    """``<endpoint>/v1/traces`` (kept as given when it already names the traces path)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class SpanExport:
    """The queue, the thread and the SDK pipeline of one gateway."""

    def __init__(self, endpoint: str, service_name: str = "tollway") -> None:
        self.endpoint = traces_url(endpoint)
        self.queue: deque[SpanData] = deque(maxlen=QUEUE_LIMIT)
        self._ids = _ChosenIds()
        self._provider: TracerProvider | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.service_name = service_name

    def start(self) -> None:
        if self._thread is not None:
            return
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": self.service_name}),
            id_generator=self._ids,
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=self.endpoint, timeout=10),
                schedule_delay_millis=EXPORT_DELAY_MS,
            )
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tollway-spans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Make the queued spans, export what is left (bounded by the exporter's timeout)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(15)
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None

    def add(self, span: SpanData) -> None:
        self.queue.append(span)  # (thread-safe; the oldest is dropped when full)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        provider = self._provider
        if provider is None:
            return
        tracer = provider.get_tracer("tollway.gateway")
        queue = self.queue
        while queue:
            try:
                self._make(tracer, queue.popleft())
            except Exception:  # a span must never take the thread down
                logger.exception("could not export a span")

    def _make(self, tracer: trace.Tracer, data: SpanData) -> None:
        trace_id, span_id, parent_id, flags, name, start, end, attributes, error = data
        self._ids.trace_id, self._ids.span_id = trace_id, span_id
        context = None
        if parent_id is not None:
            parent = SpanContext(trace_id, parent_id, is_remote=True, trace_flags=TraceFlags(flags))
            context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        span = tracer.start_span(
            name, context=context, kind=SpanKind.SERVER, attributes=attributes, start_time=start
        )
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)
