"""The fast transport: API requests to HTTP backends are proxied by callbacks, without ASGI.

``GatewayProtocol`` is ``GuardedProtocol`` (uvicorn's httptools protocol with Tollway's limits on
what clients send, tollway.gateway.transport.guarded) with one change: when a request's headers are
in and it is for an API with an HTTP backend, it becomes a :class:`FastExchange`: the exchange
core (``gateway.exchange.core.ApiExchange``: admission, policies, the gateway's own answers,
the replay rule, what failures become, recording) with parser callbacks that write straight to
the other side's transport. This module only moves bytes; no policy is decided here. No task,
coroutine or ASGI message is created per request, which is what takes the gateway from ~90 µs
to about nginx's CPU per request (docs/performance.md).

Awaited policy work (validate-jwt, limits on Redis, the cache lookup) runs in one task per
request that has some, while the client's reading is paused. Everything else (Tollway's own
pages, in-process backends, HTTP/1.0, upgrades, pipelined requests) falls through to uvicorn's
normal ASGI handling of the same ``Gateway`` app (the ASGI transport, ``gateway.exchange.asgi``,
over the same core). The exchange stands in for uvicorn's ``RequestResponseCycle``
(``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``), so uvicorn's
keep-alive, pipelining and graceful-shutdown logic work unchanged. uvicorn is pinned in the lock
file; the socket tests run against both transports.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import Any

import httptools

from tollway.gateway.calltrace import CallTrace
from tollway.gateway.exchange.core import Answer, ApiExchange
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.snapshot.state import Route
from tollway.gateway.transport.guarded import GuardedProtocol
from tollway.gateway.transport.http_refusals import Refusal
from tollway.gateway.transport.status_lines import STATUS_LINE
from tollway.gateway.transport.uvicorn_hooks import fast_transport_usable
from tollway.gateway.upstream.backends import BodyFraming, HttpBackend
from tollway.gateway.upstream.client import (
    StaleConnection,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.policies.base import Reject


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
            cycle.respond(cycle.refusal_answer(Reject(refusal.problem, refusal.detail)))
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


class FastExchange(ApiExchange):
    """One proxied call, driven entirely by parser callbacks on both sides: the exchange core
    (:class:`~tollway.gateway.exchange.core.ApiExchange`) decides, this moves the bytes."""

    __slots__ = (
        "backend",
        "chunked",
        "client",
        "disconnected",
        "head",
        "keep_alive",
        "message_event",
        "queued",
        "read_timeout",
        "reply_head",
        "response_complete",
        "response_started",
        "sent_at",
        "sent_body",
        "upstream",
        "watch",
    )

    def __init__(self, client: GatewayProtocol, route: Route) -> None:
        assert client.gateway is not None
        parser = client.parser
        method = parser.get_method().decode("ascii")
        super().__init__(client.gateway, route, method, client.client, CallTrace())
        self.client = client
        self.backend: HttpBackend = route.backend  # type: ignore[assignment]
        self.keep_alive = parser.should_keep_alive()
        self.response_complete = False
        self.disconnected = False
        self.message_event = _NO_EVENT
        self.upstream: UpstreamConnection | None = None
        self.chunked = False
        self.response_started = False
        self.queued: list[bytes] = []  # body bytes waiting for the backend connection
        self.head = b""  # the request head, kept for a replay on a stale pooled connection
        self.reply_head = b""  # the response head, held back to go out with the first body bytes
        self.watch: TimeoutWatch | None = None
        self.sent_at = 0.0
        self.read_timeout = self.backend.read_timeout
        self.sent_body: list[bytes] | None = []  # what went upstream, kept for a replay

    # request side ---------------------------------------------------------------------------
    def start(self, rest: bytes, query: bytes) -> None:
        client = self.client
        self.trace.path = rest
        answer = self.admit_request(rest, client.headers, query, client.scheme or "http")
        if answer is not None:
            self.respond(answer)
        elif self.policy is not None and self.must_settle():
            client.flow.pause_reading()
            self._spawn(self._settle(rest))
        else:
            self.proceed(rest)

    async def _settle(self, rest: bytes) -> None:
        """The awaited policy work (one task, only for calls that have some)."""
        answer = await self.settle()
        if self.response_complete:
            return
        self.client.flow.resume_reading()
        if answer is not None:
            self.respond(answer)
        else:
            self.proceed(rest)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task that uvicorn waits for on shutdown."""
        task = asyncio.get_running_loop().create_task(work)
        self.client.tasks.add(task)
        task.add_done_callback(self.client.tasks.discard)

    def proceed(self, rest: bytes) -> None:
        client = self.client
        self.head = self.backend.request_head(self.upstream_request(rest, {}))
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
            self.respond(self.failure_answer(exc))
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
        if self.queued:
            transport.write(head + b"".join(self.queued))
            self.queued = []
        else:
            transport.write(head)
        loop = connection.loop
        self.sent_at = loop.time()
        self.trace.forwarded()
        self.trace.forwarded()
        if self.watch is None:
            client = self.client
            if client.timeouts is None:
                client.timeouts = TimeoutWatch.of(loop)
            self.watch = client.timeouts
            self.watch.add(self)

    def request_body(self, body: bytes) -> None:
        if self.response_complete or not body:
            return
        if not self.body_in(len(body)):
            self.body_too_large()
            return
        data = b"%x\r\n%b\r\n" % (len(body), body) if self.framing == BodyFraming.CHUNKED else body
        self._send_upstream(data)

    def request_complete(self) -> None:
        self.body_complete = True
        if self.framing == BodyFraming.CHUNKED and not self.response_complete:
            self._send_upstream(b"0\r\n\r\n")

    def _send_upstream(self, data: bytes) -> None:
        if self.sent_body is not None:  # kept while the core may replay it
            if self.keep_for_replay():
                self.sent_body.append(data)
            else:
                self.sent_body = None
        upstream = self.upstream
        if upstream is None or upstream.transport is None:
            self.queued.append(data)
        else:
            upstream.transport.write(data)

    # response side (ResponseSink) ---------------------------------------------------------
    def upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.trace.responded()
        out = [STATUS_LINE[status], b"x-request-id: ", self.trace.request_id, b"\r\n"]
        has_length = False
        for name, value in self.client_head(status, headers):
            if name == b"content-length":
                has_length = True
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
        self.body_out(data)
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
        store = self.store_response()
        if store is not None:
            # Stored after the response went out: the client is not kept waiting for the store
            # (a repeat that races the write is a miss, which is harmless).
            self._spawn(store)
        self.finish()

    def upstream_failed(self, error: UpstreamError) -> None:
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            connection.close()
        if self.response_complete:
            return
        if self.may_replay(error):
            self.queued = list(self.sent_body or ())
            self._cancel_timer()
            self.connect()
            return
        if not self.response_started:
            self.respond(self.failure_answer(error))
            return
        if self.reply_head:  # the head was held back: send it, the body is what got cut short
            self.client.transport.write(self.reply_head)
            self.reply_head = b""
        self.cut_short(error)
        self.keep_alive = False
        self.client.transport.close()
        self.finish()

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
        """A chunked body crossed the limit: the backend loses the connection, the client the
        core's answer (a 413, or only the closed connection once the response has started)."""
        connection, self.upstream = self.upstream, None
        if connection is not None:
            connection.sink = None
            connection.close()
        self.keep_alive = False  # the rest of the body is still coming: close after answering
        answer = self.body_over_limit()
        if answer is None:
            self.client.transport.close()
            self.finish()
            return
        self.respond(answer)

    def respond(self, answer: Answer) -> None:
        """A complete response made by the gateway itself (its headers carry the length)."""
        if self.response_complete:
            return
        status, headers, body = answer
        client = self.client
        if client.expect_100_continue:
            # The client is waiting for "100 Continue" before sending its body; it may or may
            # not send it now (RFC 9110 §10.1.1), so the connection cannot be reused safely.
            self.keep_alive = False
        out = [STATUS_LINE[status], b"x-request-id: ", self.trace.ensure(client.headers), b"\r\n"]
        for name, value in [*headers, *client.server_state.default_headers]:
            out += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            out.append(b"connection: close\r\n")
        out += (b"\r\n", body)
        if not client.transport.is_closing():
            client.transport.write(b"".join(out))
        self.response_started = True
        self.finish()

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
            self.client_left()
            self.finish()

    def finish(self) -> None:
        """The core records the exchange; uvicorn carries on (keep-alive, pipelined requests)."""
        self.response_complete = True
        self._cancel_timer()
        self.end()
        if not self.keep_alive:
            self.client.transport.close()
        self.client.on_response_complete()
