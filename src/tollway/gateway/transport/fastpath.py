"""The fast path: API requests to HTTP backends are proxied by callbacks, without ASGI.

``GatewayProtocol`` is ``GuardedProtocol`` (uvicorn's httptools protocol with Tollway's limits on
what clients send, tollway.gateway.transport.guarded) with one change: when a request's headers are
in and it is for an API with an HTTP backend, it is admitted (same rules as the ASGI path:
``Gateway.admit``) and proxied by a :class:`FastExchange`, whose parser callbacks write straight
to the other side's transport. No task, coroutine or ASGI message is created per request, which
is what takes the gateway from ~90 µs to about nginx's CPU per request (docs/performance.md).

Every policy runs here too: awaited policy work (validate-jwt, limits on Redis, the cache
lookup) in one task per request that needs it, while the client's reading is paused. Everything
else (Tollway's own pages, in-process backends, HTTP/1.0, upgrades, pipelined requests) falls
through to uvicorn's normal ASGI handling of the same ``Gateway`` app. The
exchange stands in for uvicorn's ``RequestResponseCycle`` (``response_complete``,
``keep_alive``, ``disconnected``, ``message_event``), so uvicorn's keep-alive, pipelining and
graceful-shutdown logic work unchanged. uvicorn is pinned in the lock file; the socket tests run
against both paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Coroutine
from typing import Any

import httptools

from tollway import problems
from tollway.gateway.exchange.gateway import Admission, refusal
from tollway.gateway.exchange.policed import body_too_large
from tollway.gateway.exchange.policing import Pending, Preflight
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.snapshot.state import Route
from tollway.gateway.transport.guarded import GuardedProtocol
from tollway.gateway.transport.http_refusals import Refusal
from tollway.gateway.transport.status_lines import STATUS_LINE
from tollway.gateway.transport.uvicorn_hooks import fast_transport_usable
from tollway.gateway.upstream.backends import (
    CLIENT_CLOSED,
    HOP_BY_HOP,
    REPLAY_LIMIT,
    BodyFraming,
    HttpBackend,
    UpstreamRequest,
)
from tollway.gateway.upstream.client import (
    NoTargetAvailable,
    StaleConnection,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.gateway.upstream.pool import backend_unavailable
from tollway.policies.base import Reject
from tollway.policies.cache import CacheCapture, hit_answer
from tollway.stores.base import CachedResponse
from tollway.types import Headers

logger = logging.getLogger("tollway.gateway")


class _NoEvent:
    """uvicorn sets ``cycle.message_event`` on disconnect; the fast path has nothing to wake."""

    def set(self) -> None:
        return None


_NO_EVENT = _NoEvent()


class GatewayProtocol(GuardedProtocol):
    """Tollway's HTTP protocol: the client-side limits of ``GuardedProtocol`` and the gateway's
    fast path (``uvicorn --http`` takes it). ``fast_routing`` None follows TOLLWAY_FAST_PATH
    (and is off when the installed uvicorn lacks a hook: ``uvicorn_hooks``); with fast routing
    off every request takes the ASGI path, under the same limits."""

    fast_routing: bool | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts: TimeoutWatch | None = None  # this loop's watch, looked up once
        if self.fast_routing is None:
            gateway = self.gateway
            self.fast_routing = (
                gateway is not None and gateway.settings.fast_path and fast_transport_usable()
            )

    def begin_request(self) -> None:
        route_and_rest = self._fast_route()
        if route_and_rest is None:
            super().begin_request()
            return
        route, rest, query = route_and_rest
        exchange = FastExchange(self, route)
        self.cycle = exchange  # type: ignore[assignment]  # stands in for RequestResponseCycle
        exchange.start(rest, query)

    def _fast_route(self) -> tuple[Route, bytes, bytes] | None:
        cycle = self.cycle
        if not self.fast_routing or self.gateway is None:
            return None
        if cycle is not None and not cycle.response_complete:
            return None  # pipelined behind a response in flight: uvicorn queues it
        parser = self.parser
        if parser.should_upgrade() or parser.get_http_version() != "1.1":
            return None
        url = httptools.parse_url(self.url)
        path = normalise_path(url.path)
        if path is None:
            return None
        match = self.gateway.state.routes.match(path)
        if match is None or not isinstance(match[0].backend, HttpBackend):
            return None
        return match[0], match[1], url.query or b""

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if isinstance(cycle, FastExchange):
            cycle.request_body(body)
        else:
            super().on_body(body)

    def end_request_body(self) -> None:
        cycle = self.cycle
        if isinstance(cycle, FastExchange):
            cycle.request_complete()
        else:
            super().end_request_body()

    def abort_request(self, refusal: Refusal) -> None:
        cycle = self.cycle
        if isinstance(cycle, FastExchange):
            cycle.keep_alive = False
            cycle.respond_reject(Reject(refusal.problem, refusal.detail))
        else:
            super().abort_request(refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if isinstance(cycle, FastExchange):
            cycle.client_gone()

    def pause_writing(self) -> None:
        super().pause_writing()
        cycle = self.cycle
        if isinstance(cycle, FastExchange):
            cycle.client_writable(False)

    def resume_writing(self) -> None:
        super().resume_writing()
        cycle = self.cycle
        if isinstance(cycle, FastExchange):
            cycle.client_writable(True)


class TimeoutWatch:
    """Backend read timeouts for one loop's in-flight exchanges: one periodic sweep, no timer
    per request (a timer costs more than the rest of the bookkeeping together)."""

    TICK = 0.1
    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimeoutWatch] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.exchanges: set[FastExchange] = set()
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> TimeoutWatch:
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls(loop)
        return watch

    def add(self, exchange: FastExchange) -> None:
        self.exchanges.add(exchange)
        if self.handle is None:
            self.handle = self.loop.call_later(self.TICK, self.sweep)

    def discard(self, exchange: FastExchange) -> None:
        self.exchanges.discard(exchange)

    def sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        for exchange in list(self.exchanges):
            if not exchange.check_timeout(now):
                self.exchanges.discard(exchange)
        if self.exchanges:
            self.handle = self.loop.call_later(self.TICK, self.sweep)


class FastExchange:
    """One proxied request/response, driven entirely by parser callbacks on both sides."""

    __slots__ = (
        "backend",
        "bytes_in",
        "bytes_out",
        "capture",
        "chunked",
        "client",
        "client_ip",
        "disconnected",
        "framing",
        "gateway",
        "head",
        "head_timeout",
        "keep_alive",
        "max_body",
        "message_event",
        "method",
        "pending",
        "pending_policy",
        "read_timeout",
        "reply_head",
        "request_finished",
        "response_complete",
        "response_started",
        "retried",
        "route",
        "sent_at",
        "sent_body",
        "started",
        "status",
        "subscription_id",
        "upstream",
        "watch",
    )

    def __init__(self, client: GatewayProtocol, route: Route) -> None:
        assert client.gateway is not None
        self.client = client
        self.gateway = client.gateway
        self.route = route
        self.backend: HttpBackend = route.backend  # type: ignore[assignment]
        self.method = client.parser.get_method().decode("ascii")
        self.keep_alive = client.parser.should_keep_alive()
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT
        self.started = time.perf_counter()
        self.subscription_id = 0
        self.upstream: UpstreamConnection | None = None
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.chunked = False
        self.response_started = False
        self.framing = BodyFraming.NONE
        self.request_finished = False
        self.pending: list[bytes] = []
        self.head = b""  # the request head, kept for a retry on a stale pooled connection
        self.reply_head = b""  # the response head, held back to go out with the first body bytes
        self.retried = False
        self.watch: TimeoutWatch | None = None
        self.sent_at = 0.0
        self.pending_policy: Pending | None = None
        self.client_ip = ""
        self.read_timeout = self.backend.read_timeout
        self.head_timeout: float | None = None  # the timeout policy: forwarding -> head
        self.sent_body: list[bytes] | None = []  # what went upstream, kept for a replay
        self.max_body = 0
        self.capture: CacheCapture | None = None  # a GET cache miss, kept to be stored

    # request side ---------------------------------------------------------------------------
    def start(self, rest: bytes, query: bytes) -> None:
        client = self.client
        peer = client.client[0] if client.client else ""
        outcome = self.gateway.admit(
            self.route, self.method, rest, client.headers, query, peer, client.scheme or "http"
        )
        if isinstance(outcome, Preflight):
            self.respond(204, b"", outcome.headers)
            return
        if not isinstance(outcome, Admission):
            reject, self.subscription_id = refusal(outcome)
            self.respond_reject(reject)
            return
        self.subscription_id = outcome.subscription_id
        self.client_ip = outcome.client_ip
        self.framing = outcome.framing
        self.max_body = outcome.max_body
        pending = outcome.pending
        if pending is not None:
            self.pending_policy = pending
            self.head_timeout = pending.chain.timeout
            cache = pending.chain.cache
            key = cache.key(pending.ctx, outcome.query) if cache is not None else None
            if key is not None or self.gateway.policing.needs_settling(pending):
                self.client.flow.pause_reading()
                self._spawn(self._settle(outcome, rest, key))
                return
        self.proceed(outcome, rest)

    async def _settle(self, outcome: Admission, rest: bytes, cache_key: str | None) -> None:
        """The awaited policy work, then the cache lookup (a refused call is never answered
        from the cache); the same order as on the ASGI path."""
        pending = self.pending_policy
        assert pending is not None
        refused = await self.gateway.settle(outcome, pending)
        cache = pending.chain.cache
        hit = None
        if refused is None and cache is not None and cache_key is not None:
            hit = await cache.lookup(self.gateway.cache_store, pending.ctx, cache_key)
            if hit is None:
                self.capture = cache.capture(pending.ctx, cache_key)
        if self.response_complete:
            return
        self.client.flow.resume_reading()
        if refused is not None:
            self.respond_reject(refused)
        elif hit is not None:
            self.respond_cached(hit, pending)
        else:
            self.proceed(outcome, rest)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that uvicorn waits for on shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self.client.tasks.add(task)
        task.add_done_callback(self.client.tasks.discard)

    def proceed(self, outcome: Admission, rest: bytes) -> None:
        client = self.client
        request = UpstreamRequest(
            self.method, rest, outcome.query, outcome.headers, outcome.host, outcome.framing, {}
        )
        self.head = self.backend.request_head(request)
        if client.expect_100_continue and self.framing != BodyFraming.NONE:
            client.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        connection = self.backend.take_idle()
        if connection is None:
            self.connect()
        else:
            self.attach(connection)

    def connect(self) -> None:
        self.client.flow.pause_reading()  # hold the body until there is somewhere to send it
        self._spawn(self._connect())

    async def _connect(self) -> None:
        try:
            connection = await self.backend.connect()
        except UpstreamError as exc:
            self.fail_before_response(exc)
            return
        if self.response_complete:  # the client left while we were connecting
            connection.close()
            return
        self.client.flow.resume_reading()
        self.attach(connection)

    def attach(self, connection: UpstreamConnection) -> None:
        self.upstream = connection
        connection.sink = self
        transport = connection.transport
        if transport is None or connection.closed:
            self.upstream_failed(StaleConnection("pooled connection already closed"))
            return
        head = self.backend.head_for(connection, self.head)
        if self.pending:
            transport.write(head + b"".join(self.pending))
            self.pending = []
        else:
            transport.write(head)
        loop = connection.loop
        self.sent_at = loop.time()
        if self.watch is None:
            client = self.client
            if client.timeouts is None:
                client.timeouts = TimeoutWatch.of(loop)
            self.watch = client.timeouts
            self.watch.add(self)

    def request_body(self, body: bytes) -> None:
        if self.response_complete or not body:
            return
        self.bytes_in += len(body)
        if self.bytes_in > self.max_body:  # (only a chunked body can get here)
            self.body_too_large()
            return
        data = b"%x\r\n%b\r\n" % (len(body), body) if self.framing == BodyFraming.CHUNKED else body
        self._send_upstream(data)

    def request_complete(self) -> None:
        self.request_finished = True
        if self.framing == BodyFraming.CHUNKED and not self.response_complete:
            self._send_upstream(b"0\r\n\r\n")

    def _send_upstream(self, data: bytes) -> None:
        if self.sent_body is not None:  # kept while small: a stale pooled connection replays it
            if self.bytes_in <= REPLAY_LIMIT:
                self.sent_body.append(data)
            else:
                self.sent_body = None
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            self.pending.append(data)
        else:
            upstream.transport.write(data)

    # response side (ResponseSink) ---------------------------------------------------------
    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        capture = self.capture
        if capture is not None:  # (kept as the client gets it; the loop below is idempotent)
            client_headers = self.backend.client_headers(headers, self.route.prefix_bytes)
            headers = capture.begin(status, client_headers)
        pending = self.pending_policy
        if pending is not None:
            headers = pending.edit_response(headers)
        out = [STATUS_LINE[status]]
        has_length = False
        for name, value in headers:
            if name in HOP_BY_HOP:
                continue
            if name == b"content-length":
                has_length = True
            elif name == b"location":
                value = self.backend.client_location(value, self.route.prefix_bytes)
            out += (name, b": ", value, b"\r\n")
        head_only = self.method == "HEAD"
        if not has_length and not head_only and status not in (204, 304) and status >= 200:
            self.chunked = True
            out.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        # Held back and written with the first body bytes: one write for a small response.
        self.reply_head = b"".join(out)
        self.response_started = True
        if head_only and self.upstream is not None:
            # No body follows a HEAD response; httptools cannot be told, so do not reuse.
            self.upstream.keep_alive = False
            self.upstream.complete = True
            self.upstream_complete()

    def upstream_body(self, data: bytes) -> None:
        if self.response_complete:
            return
        self.bytes_out += len(data)
        if self.capture is not None:
            self.capture.feed(data)
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self.reply_head:
            data, self.reply_head = self.reply_head + data, b""
        self.client.transport.write(data)

    def upstream_complete(self) -> None:
        if self.response_complete:
            return
        tail = b"0\r\n\r\n" if self.chunked else b""
        if self.reply_head or tail:
            self.client.transport.write(self.reply_head + tail)
            self.reply_head = b""
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            self.backend.release(connection)
        capture = self.capture
        if capture is not None and capture.storable:
            # Stored after the response went out: the client is not kept waiting for the store
            # (a repeat that races the write is a miss, which is harmless).
            self._spawn(capture.finish(self.gateway.cache_store))
        self.finish(self.status)

    def upstream_failed(self, error: UpstreamError) -> None:
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            connection.close()
        if self.response_complete:
            return
        replayable = self.framing == BodyFraming.NONE or (
            self.request_finished and self.sent_body is not None
        )
        if isinstance(error, StaleConnection) and replayable and not self.retried:
            self.retried = True
            self.pending = list(self.sent_body or ())
            self._cancel_timer()
            self.connect()
            return
        if not self.response_started:
            self.fail_before_response(error)
            return
        if self.reply_head:  # the head was held back: send it, the body is what got cut short
            self.client.transport.write(self.reply_head)
            self.reply_head = b""
        logger.warning("api %s: response cut short: %s", self.route.name, error)
        self.keep_alive = False
        self.client.transport.close()
        self.finish(self.status)

    def upstream_writable(self, writable: bool) -> None:
        if writable:
            self.client.flow.resume_reading()
        else:
            self.client.flow.pause_reading()

    def client_writable(self, writable: bool) -> None:
        transport = self.upstream.transport if self.upstream is not None else None
        if transport is not None:
            if writable:
                transport.resume_reading()
            else:
                transport.pause_reading()

    # endings ------------------------------------------------------------------------------
    def body_too_large(self) -> None:
        """A chunked body crossed the limit: the backend loses the connection, the client a 413."""
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            connection.close()
        self.keep_alive = False  # the rest of the body is still coming: close after answering
        if self.response_started:
            self.client.transport.close()
            self.finish(self.status)
            return
        self.respond_reject(body_too_large(None, self.max_body))

    def fail_before_response(self, error: UpstreamError) -> None:
        if isinstance(error, NoTargetAvailable):
            self.respond_reject(backend_unavailable(error))
            return
        logger.warning("api %s: %s", self.route.name, error)
        timeout = isinstance(error, UpstreamTimeout)
        self.respond_problem(problems.BACKEND_TIMEOUT if timeout else problems.BACKEND_UNREACHABLE)

    def respond_problem(self, problem: problems.ProblemType) -> None:
        self.respond_reject(Reject(problem))

    def respond_reject(self, reject: Reject) -> None:
        status = reject.status or reject.problem.status
        body = problems.problem_body(reject.problem, reject.detail, status=status, **reject.extra)
        headers = [(b"content-type", problems.PROBLEM_CONTENT_TYPE), *reject.headers]
        headers += self.gateway.refusal_headers(self.route, self.client.headers)
        self.respond(status, body, headers)

    def respond_cached(self, hit: CachedResponse, pending: Pending) -> None:
        """Answer from the cache: recorded as the hit's status, nothing in, the body out."""
        headers, body = hit_answer(hit, self.method, time.time())
        self.bytes_out = len(body)
        self.respond_framed(hit.status, body, pending.edit_response(headers))

    def respond(self, status: int, body: bytes, headers: Headers) -> None:
        """A complete response made by the gateway itself."""
        length = (b"content-length", str(len(body)).encode())
        self.respond_framed(status, body, [length, *headers])

    def respond_framed(self, status: int, body: bytes, headers: Headers) -> None:
        """A complete response whose ``headers`` already carry its Content-Length."""
        if self.response_complete:
            return
        client = self.client
        if client.expect_100_continue:
            # The client is waiting for "100 Continue" before sending its body; it may or may
            # not send it now (RFC 9110 §10.1.1), so the connection cannot be reused safely.
            self.keep_alive = False
        out = [STATUS_LINE[status]]
        for name, value in [*headers, *client.server_state.default_headers]:
            out += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out += (b"\r\n", body)
        if not client.transport.is_closing():
            client.transport.write(b"".join(out))
        self.response_started = True
        self.finish(status)

    def check_timeout(self, now: float) -> bool:
        """Fail the exchange if the backend has been silent too long; False once it is over."""
        connection = self.upstream
        if self.response_complete:
            return False
        if connection is None:
            return True  # connecting: the connect timeout applies
        head_timeout = self.head_timeout
        late = head_timeout is not None and now - self.sent_at >= head_timeout
        if late and not self.response_started:
            connection.fail(
                UpstreamTimeout(f"the backend sent no response head within {head_timeout}s")
            )
            return False
        timeout = self.read_timeout
        idle = now - max(connection.last_activity, self.sent_at)
        if idle >= timeout and not self.client.flow.write_paused:
            # (A paused client means we are the ones holding the backend back.)
            connection.fail(UpstreamTimeout(f"the backend sent nothing for {timeout}s"))
        return not self.response_complete

    def _cancel_timer(self) -> None:
        if self.watch is not None:
            self.watch.discard(self)
            self.watch = None

    def client_gone(self) -> None:
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            connection.close()
        if not self.response_complete:
            self.finish(CLIENT_CLOSED)

    def finish(self, status: int) -> None:
        """Record the exchange and let uvicorn carry on (keep-alive, pipelined requests)."""
        self.response_complete = True
        self._cancel_timer()
        if self.pending_policy is not None and self.pending_policy.chain.limiters:
            self.gateway.policing.record_bytes(self.pending_policy, self.bytes_in + self.bytes_out)
        self.gateway.record_exchange(
            self.route,
            self.subscription_id,
            status,
            self.bytes_in,
            self.bytes_out,
            self.started,
            self.method,
            self.client_ip or self.client.client,
        )
        if not self.keep_alive:
            self.client.transport.close()
        self.client.on_response_complete()
