"""Metrics, request ids, trace context and the JSON access log, over real sockets on both
transports (issue 12, items 1 to 3; docs/observability.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tollway.gateway.calltrace import parse_traceparent

from ..gateway.conftest import apply
from .conftest import ECHO, Served, subscribe

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

CONFIG: dict[str, Any] = {
    "backends": {"echo": ECHO},
    "apis": {
        "echo": {
            "path": "/echo",
            "backend": "echo",
            "policies": [{"type": "rate-limit", "calls": 3, "period": 60}],
        },
        "open": {
            "path": "/open",
            "backend": "echo",
            "subscription_required": False,
            "policies": [{"type": "cache", "ttl": 60}, {"type": "timeout", "seconds": 0.2}],
        },
        "other": {"path": "/other", "backend": "echo"},
    },
    "products": {"starter": {"apis": ["echo", "open"]}, "other-only": {"apis": ["other"]}},
}


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/-/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def settled(client: httpx.AsyncClient, name: str, want: float, **labels: str) -> Samples:
    """The metrics once ``name`` reaches ``want`` (a call is counted after its response)."""
    deadline = time.monotonic() + 10
    while True:
        samples = await scrape(client)
        if value(samples, name, **labels) >= want or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.02)


async def test_metrics_count_each_kind_of_call_exactly(
    sqlite_engine: Engine, sqlite_url: str, served: Served
) -> None:
    apply(sqlite_engine, CONFIG)
    starter = subscribe(sqlite_engine)
    other = subscribe(sqlite_engine, "other@example.com", "other-only")
    async with served(sqlite_engine, sqlite_url, CONFIG) as (_, client):
        before = await scrape(client)
        assert (
            value(
                before, "tollway_requests_total", api="echo", product="starter", status_class="2xx"
            )
            == 0
        )
        key = {"X-API-Key": starter.primary}
        codes = [(await client.get("/echo/x", headers=key)).status_code for _ in range(5)]
        codes += [(await client.get("/echo/x")).status_code for _ in range(2)]
        codes.append(
            (await client.get("/echo/x", headers={"X-API-Key": other.primary})).status_code
        )
        codes += [(await client.get("/open/doc")).status_code for _ in range(2)]
        codes.append((await client.get("/open/slow?seconds=1")).status_code)
        codes.append((await client.post("/open/doc", content=b"12345")).status_code)
        assert codes == [200, 200, 200, 429, 429, 401, 401, 403, 200, 200, 504, 200]
        after = await settled(client, "tollway_request_duration_seconds_count", 4, api="open")

    def total(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "tollway_requests_total"
    assert total(requests, api="echo", product="starter", status_class="2xx") == 3
    assert total(requests, api="echo", product="starter", status_class="4xx") == 2
    assert total(requests, api="echo", product="", status_class="4xx") == 3  # before the key
    assert total(requests, api="open", product="", status_class="2xx") == 3
    assert total(requests, api="open", product="", status_class="5xx") == 1
    assert sum(v for (n, _), v in after.items() if n == requests) == 12
    rejections = "tollway_policy_rejections_total"
    assert total(rejections, api="echo", policy="rate-limit") == 2
    assert total(rejections, api="echo", policy="key") == 2
    assert total(rejections, api="echo", policy="access") == 1
    assert sum(v for (n, _), v in after.items() if n == rejections) == 5
    cache = "tollway_cache_requests_total"
    assert total(cache, api="open", result="miss") == 2  # the first GET and the slow one
    assert total(cache, api="open", result="hit") == 1
    assert total(cache, api="open", result="bypass") == 1  # the POST
    assert total("tollway_request_duration_seconds_count", api="echo") == 8
    assert total("tollway_request_duration_seconds_count", api="open") == 4
    # Upstream time: only calls whose backend answered (not the refusals, the hit, the 504).
    assert total("tollway_upstream_duration_seconds_count", api="echo") == 3
    assert total("tollway_upstream_duration_seconds_count", api="open") == 2
    assert total("tollway_upstream_duration_seconds_bucket", api="open", le="+Inf") == 2
    assert total("tollway_request_duration_seconds_sum", api="open") >= 0.2  # the 504 waited
    assert total("tollway_bytes_total", api="open", direction="in") == 5
    assert total("tollway_bytes_total", api="echo", direction="out") > 0
    # State gauges, and nothing that names a key or a subscription.
    assert value(after, "tollway_config_version") > 0
    assert value(after, "tollway_usage_buffer_rows") > 0
    pools = [labels for (n, labels) in after if n == "tollway_upstream_connections"]
    assert pools and all(dict(labels)["target"].startswith("127.0.0.1:") for labels in pools)
    assert {dict(labels)["backend"] for labels in pools} == {"echo"}
    assert starter.primary not in str(after) and other.primary not in str(after)
    assert all("subscription" not in k for (_, labels) in after for k, _ in labels)


async def test_request_id_and_traceparent_reach_the_backend(
    sqlite_engine: Engine, sqlite_url: str, served: Served
) -> None:
    apply(sqlite_engine, CONFIG)
    starter = subscribe(sqlite_engine)
    client_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    key = {"X-API-Key": starter.primary}
    async with served(sqlite_engine, sqlite_url, CONFIG) as (_, client):
        kept = await client.get(
            "/echo/x", headers={**key, "X-Request-ID": "abc-123", "traceparent": client_trace}
        )
        fresh = await client.get(
            "/echo/x", headers={**key, "X-Request-ID": "bad id\twith spaces", "traceparent": "x"}
        )
        refused = await client.get("/echo/x", headers={"X-Request-ID": "refused-1"})
        # A backend's own X-Request-ID does not reach the client next to the gateway's.
        own = await client.get(
            "/echo/with-headers?X-Request-ID=backend-own", headers={**key, "X-Request-ID": "r-2"}
        )
        page = await client.get("/-/health")
        unknown = await client.get("/nowhere")

    def seen(response: httpx.Response) -> dict[str, str]:
        return {n: v for n, v in response.json()["headers"]}

    assert kept.status_code == 200 and kept.headers["x-request-id"] == "abc-123"
    backend = seen(kept)
    assert backend["x-request-id"] == "abc-123"
    parsed = parse_traceparent(backend["traceparent"].encode())
    assert parsed is not None
    trace_id, parent, flags = parsed
    assert trace_id == b"0af7651916cd43dd8448eb211c80319c" and flags == b"01"  # continued
    assert parent != b"b7ad6b7169203331"  # the gateway's own span is the backend's parent
    assert [n for n, _ in seen(kept).items() if n == "traceparent"] == ["traceparent"]
    # Not sane: replaced by a generated id, the same one the backend got; a new trace started.
    generated = fresh.headers["x-request-id"]
    assert len(generated) == 32 and generated != "bad id\twith spaces"
    assert seen(fresh)["x-request-id"] == generated
    new_trace = parse_traceparent(seen(fresh)["traceparent"].encode())
    assert new_trace is not None and new_trace[0] != trace_id
    # Refusals, Tollway's pages and unknown paths carry one too.
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "refused-1"
    assert own.status_code == 200 and own.headers.get_list("x-request-id") == ["r-2"]
    assert len(page.headers["x-request-id"]) == 32
    assert unknown.status_code == 404 and len(unknown.headers["x-request-id"]) == 32


async def test_json_access_log_parses_and_holds_no_secret(
    sqlite_engine: Engine,
    sqlite_url: str,
    served: Served,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apply(sqlite_engine, CONFIG)
    starter = subscribe(sqlite_engine)
    caplog.set_level(logging.INFO, logger="tollway.access")
    secrets = [starter.primary, starter.secondary, "tw_guessed-key-0123", "token-secret-42"]
    async with served(sqlite_engine, sqlite_url, CONFIG, access_log="json") as (_, client):
        await client.get("/echo/x", headers={"X-API-Key": starter.primary, "X-Request-ID": "r-1"})
        await client.get(f"/echo/x?subscription-key={starter.secondary}&q=1")
        await client.get("/echo/x?subscription-key=tw_guessed-key-0123")
        await client.get("/open/doc?token=token-secret-42")
        await client.get("/-/health?token=token-secret-42")
        deadline = time.monotonic() + 10
        while len(lines := access_lines(caplog.records)) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    assert len(lines) == 5
    for line in lines:
        assert not any(secret in line for secret in secrets), line
    entries = [json.loads(line) for line in lines]
    first = entries[0]
    assert first["request_id"] == "r-1" and first["status"] == 200
    assert first["method"] == "GET" and first["path"] == "/echo/x" and first["api"] == "echo"
    assert first["product"] == "starter" and first["subscription_id"] == starter.subscription.id
    assert first["client"] == "127.0.0.1" and first["upstream_ms"] >= 0
    assert first["duration_ms"] >= first["upstream_ms"] and first["rejection"] is None
    assert first["bytes_out"] > 0 and first["time"].endswith("Z")
    assert len(first["trace_id"]) == 32
    assert entries[1]["path"] == "/echo/x" and entries[1]["status"] == 200
    assert entries[2]["status"] == 401 and entries[2]["rejection"] == "key"
    assert entries[2]["problem"] == "invalid-key" and entries[2]["upstream_ms"] is None
    assert entries[3]["api"] == "open" and entries[3]["cache"] == "miss"
    assert entries[4]["path"] == "/-/health" and entries[4]["status"] == 200
    assert all(len(entry["request_id"]) > 0 for entry in entries)


def access_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "tollway.access"]


class OtlpReceiver:
    """A local OTLP/HTTP receiver (protobuf), as an OpenTelemetry collector listens on 4318."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            receiver.spans.extend(scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int) -> list[Any]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.05)
        return list(self.spans)


def attributes(span: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        out[item.key] = getattr(item.value, kind)
    return out


async def test_spans_reach_an_otlp_receiver(
    sqlite_engine: Engine, sqlite_url: str, served: Served
) -> None:
    cfg = {
        **CONFIG,
        "apis": {
            **CONFIG["apis"],
            "echo": {**CONFIG["apis"]["echo"], "operations": ["GET /items/{id}"]},
        },
    }
    apply(sqlite_engine, cfg)
    starter = subscribe(sqlite_engine)
    client_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with OtlpReceiver() as receiver:
        settings = {"otel_exporter_otlp_endpoint": receiver.url}
        async with served(sqlite_engine, sqlite_url, cfg, **settings) as (_, client):
            ok = await client.get(
                "/echo/items/7",
                headers={"X-API-Key": starter.primary, "traceparent": client_trace},
            )
            refused = await client.get("/echo/items/8")
            spans = await asyncio.to_thread(receiver.wait_for, 2)  # exported while serving
    assert ok.status_code == 200 and refused.status_code == 401
    assert len(spans) == 2
    by_status = {attributes(span)["http.response.status_code"]: span for span in spans}
    served_span, refused_span = by_status[200], by_status[401]
    seen = {n: v for n, v in ok.json()["headers"]}
    trace_id, parent, _ = parse_traceparent(seen["traceparent"].encode()) or (b"", b"", b"")
    # The span is the backend's parent, and the child of the client's span.
    assert served_span.trace_id.hex() == trace_id.decode() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert served_span.span_id.hex() == parent.decode()
    assert served_span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert served_span.name == refused_span.name == "GET /items/{id}"
    assert attributes(served_span) == {
        "tollway.api": "echo",
        "tollway.request_id": ok.headers["x-request-id"],
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "url.path": "/echo/items/7",
        "client.address": "127.0.0.1",
        "tollway.operation": "GET /items/{id}",
        "tollway.product": "starter",
        "tollway.subscription_id": starter.subscription.id,
    }
    assert served_span.end_time_unix_nano > served_span.start_time_unix_nano
    refused_attributes = attributes(refused_span)
    assert refused_attributes["tollway.rejection"] == "key"
    assert refused_attributes["tollway.problem"] == "missing-key"
    assert refused_span.parent_span_id == b""  # no traceparent from the client: a new trace


async def test_size_limit_refusals_count_as_the_policys_on_both_body_kinds(
    sqlite_engine: Engine, sqlite_url: str, served: Served
) -> None:
    cfg = {
        **CONFIG,
        "apis": {
            "open": {
                "path": "/open",
                "backend": "echo",
                "subscription_required": False,
                "policies": [{"type": "request-size-limit", "max_bytes": 10}],
            }
        },
        "products": {},
    }

    async def chunked() -> Any:
        for part in (b"x" * 8, b"x" * 8):
            yield part

    apply(sqlite_engine, cfg)
    async with served(sqlite_engine, sqlite_url, cfg) as (_, client):
        announced = await client.post("/open/upload", content=b"x" * 11)
        streamed = await client.post("/open/upload", content=chunked())
        assert announced.status_code == streamed.status_code == 413
        after = await settled(
            client, "tollway_requests_total", 2, api="open", product="", status_class="4xx"
        )
    assert (
        value(after, "tollway_policy_rejections_total", api="open", policy="request-size-limit")
        == 2
    )
