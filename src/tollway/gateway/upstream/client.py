"""A lean HTTP/1.1 client for forwarding: asyncio protocols, httptools parsing, keep-alive pool.

Why not httx or aiohttp: on the 2-core reference machine httpx costs ~0.5 ms of CPU per request
and aiohttp ~107 µs (docs/performance.md), while the whole gateway budget is 60 µs. Forwarding
needs little of what a general client offers: one request at a time per connection, bodies
streamed both ways with back-pressure, hop-by-hop headers already handled by the caller.

One :class:`Exchange` drives one request/response over a :class:`UpstreamConnection`;
:class:`Origin` keeps the idle keep-alive connections of one backend target (LIFO, bounded, each
kept at most ``max_idle_seconds`` and used for at most ``max_requests`` calls). A backend with
several targets is a ``pool.Pool`` of origins; each connection reports how its calls went to its
target's ``health.TargetState`` (passive health checks, circuit breaker): a connect error, a
timeout, a broken response or a 5xx status is a failure, any other response head a success.

A pooled connection is trusted only while it behaves: bytes that arrive while it is idle, or
after the response to the request in flight (a second response, a body on a 204 or HEAD answer,
a ``Content-Length`` shorter than the body), close it, so they can never be read as the next
caller's answer (issue 9, item 2). A response with framing the gateway cannot be sure of
(``Transfer-Encoding`` other than ``chunked``; duplicate or conflicting lengths, which httptools
refuses) fails that call with a 502 and closes the connection.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections import deque
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import httptools

from tollway.types import Headers

if TYPE_CHECKING:
    from tollway.gateway.upstream.health import TargetState

READ_HIGH_WATER = 256 * 1024  # pause reading from the backend above this many buffered bytes
READ_LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The backend could not be reached or broke the protocol (-> 502)."""


class UpstreamTimeout(UpstreamError):
    """The backend did not connect or answer in time (-> 504)."""


class StaleConnection(UpstreamError):
    """A pooled connection was closed by the backend before it answered; safe to retry."""


class NoTargetAvailable(UpstreamError):
    """Every target of the backend is out of rotation (health checks, open circuit) (-> 503)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _StrayResponse(Exception):
    """Raised inside the parser when a message starts that no request asked for."""


class ResponseSink(Protocol):
    """Receives a response as it is parsed (the fast path); without one, it is buffered."""

    def upstream_head(self, status: int, headers: Headers) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_complete(self) -> None: ...

    def upstream_failed(self, error: UpstreamError) -> None: ...

    def upstream_writable(self, writable: bool) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP/TLS connection to a backend, parsing responses with httptools.

    By default the response is buffered for an awaiting :class:`Exchange`; with a ``sink`` set,
    each parser event is handed straight to it (``gateway.transport.fastpath``).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, owner: Origin | None = None, *, report: bool = True
    ) -> None:
        self.loop = loop
        self.owner = owner
        # where this connection's calls are reported (not for health probes, nor untracked)
        self.target_state = owner.state if owner is not None and report else None
        self.checked_out = False  # taken by a call (Origin.active counts these)
        self.requests = 0
        self.idle_since = 0.0
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle = False  # in the pool: anything received now is unsolicited
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.reset_exchange()

    def reset_exchange(self) -> None:
        """Forget the last exchange's response, ready for the next request (pool reuse)."""
        self.status = 0
        self.headers: Headers = []
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received_any = False
        self.error: UpstreamError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.until_close = False
        self.sink: ResponseSink | None = None
        self.last_activity = 0.0
        self.informational = False  # a 1xx head is being read; the real response follows
        self.reported = False  # this exchange's outcome went to the target's state

    # asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.idle or self.closed:
            self.close()  # unsolicited bytes on an idle connection: never reuse it
            return
        self.received_any = True
        self.last_activity = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _StrayResponse):
                self.close()  # the answer in flight is whole; what follows is not ours
                return
            if isinstance(exc.__context__, UpstreamError):
                self.fail(exc.__context__)
                return
            raise
        except httptools.HttpParserError:
            self.fail(UpstreamError("the backend sent a malformed HTTP response"))

    def connection_lost(self, exc: Exception | None) -> None:
        closed_here = self.closed  # we closed it (the caller gave up): not the backend's fault
        self.closed = True
        self.check_in()
        if self.headers_done and self.until_close and not self.complete:
            self.complete = True  # body delimited by connection close (RFC 9112 §6.3)
        elif not self.complete and self.error is None:
            if not self.received_any and self.reused:
                self.error = StaleConnection("pooled connection closed by the backend")
            else:
                self.error = UpstreamError("the backend closed the connection mid-response")
                if not closed_here:
                    self.report(False)
        if self.sink is not None:
            if self.complete:
                self.sink.upstream_complete()
            elif self.error is not None:
                self.sink.upstream_failed(self.error)
            return
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.sink is not None:
            self.sink.upstream_writable(False)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.sink is not None:
            self.sink.upstream_writable(True)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete or self.idle or (self.headers_done and not self.informational):
            raise _StrayResponse
        self.informational = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 1xx (103 Early Hints, ...): skipped, the response follows
            self.informational = True
            self.headers = []
            return
        codings: list[bytes] = []
        has_length = False
        for name, value in self.headers:  # (one pass: this runs for every response)
            if name == b"content-length":
                has_length = True
            elif name == b"transfer-encoding":
                codings.append(value)
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
            # nginx answers 502 too: the body's end could only be guessed.
            raise UpstreamError("the backend sent a Transfer-Encoding other than chunked")
        self.status = status
        if self.target_state is not None:
            self.report(status < 500)
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self.until_close = not codings and not has_length and status not in (204, 304)
        if self.sink is not None:
            self.sink.upstream_head(self.status, self.headers)
            return
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.informational:
            return
        if self.sink is not None:
            self.sink.upstream_body(body)
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            return
        self.complete = True
        if self.sink is not None:
            self.sink.upstream_complete()
            return
        self._wake()

    # helpers ----------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def report(self, ok: bool) -> None:
        """Tell the target how this call went (once per call; passive health checks)."""
        state = self.target_state
        if state is not None and not self.idle and not self.reported:
            self.reported = True
            state.report(ok)

    def check_in(self) -> None:
        """The call using this connection is over (least-connections counts calls in flight)."""
        if self.checked_out:
            self.checked_out = False
            assert self.owner is not None
            self.owner.active -= 1

    def fail(self, error: UpstreamError) -> None:
        """Close the connection and report ``error`` to whoever waits on it (a timeout, say)."""
        if self.error is None:
            self.error = error
        if not isinstance(error, StaleConnection):
            self.report(False)
        sink = self.sink
        self.close()
        if sink is not None:
            self.sink = None  # connection_lost must not report the failure a second time
            sink.upstream_failed(error)
            return
        self._wake()

    def close(self, *, at_once: bool = False) -> None:
        """Close the connection; ``at_once``: without TLS's close_notify exchange (shutting
        down: a TLS close still under way when the event loop closes fails the loop's close)."""
        self.check_in()
        if not self.closed and self.transport is not None:
            self.closed = True
            if at_once:
                self.transport.abort()
            else:
                self.transport.close()

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter

    def take_chunks(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data


class Origin:
    """A backend target's base URL and its pool of idle keep-alive connections."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_idle: int = 64,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        max_idle_seconds: float | None = None,
        max_requests: int | None = None,
        weight: int = 1,
        state: TargetState | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (host if default_port else f"{host}:{self.port}").encode()
        self.base_path = parts.path.rstrip("/").encode()
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.server_name = server_name or self.host
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self.max_idle_seconds = max_idle_seconds
        self.max_requests = max_requests
        self.weight = weight
        self.state = state
        self.active = 0  # connections taken by calls in flight
        self.current = 0  # smooth weighted round-robin (pool.Pool)
        self._idle: list[UpstreamConnection] = []
        self._live: weakref.WeakSet[UpstreamConnection] = weakref.WeakSet()  # (for metrics)
        self.label = (self.host_header + self.base_path).decode()  # no credentials, no scheme

    def pool_counts(self) -> tuple[int, int]:
        """Connections open to this backend, and how many of them wait idle in the pool."""
        open_ = sum(1 for connection in list(self._live) if not connection.closed)
        return open_, sum(1 for connection in self._idle if not connection.closed)

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, if one is still open (and not idle for too long)."""
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            limit = self.max_idle_seconds
            if limit is not None and connection.loop.time() - connection.idle_since > limit:
                connection.close()
                continue
            connection.reused = True
            connection.idle = False
            connection.checked_out = True  # (as _check_out, inline: this runs for every call)
            connection.requests += 1
            self.active += 1
            return connection
        return None

    def _check_out(self, connection: UpstreamConnection) -> None:
        connection.checked_out = True
        connection.requests += 1
        self.active += 1

    async def connect(self) -> UpstreamConnection:
        """A new connection for a call; a failure to connect counts against the target."""
        try:
            connection = await self.open()
        except UpstreamError:
            if self.state is not None:
                self.state.report(False)
            raise
        self._check_out(connection)
        return connection

    async def open(self, *, report: bool = True) -> UpstreamConnection:
        """A new connection (``report=False``: a health probe's, whose calls are not counted)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(loop, self, report=report),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.server_name if self.ssl else None,
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to the backend took over {self.connect_timeout}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(f"cannot connect to the backend: {exc.strerror or exc}") from None
        self._live.add(protocol)
        return protocol

    def release(self, connection: UpstreamConnection) -> None:
        """Keep a connection whose exchange finished cleanly for the next request."""
        connection.check_in()
        if (
            connection.closed
            or not connection.complete
            or not connection.keep_alive
            or len(self._idle) >= self.max_idle
            or (self.max_requests is not None and connection.requests >= self.max_requests)
        ):
            connection.close()
            return
        connection.reset_exchange()
        connection.idle = True
        if self.max_idle_seconds is not None:
            connection.idle_since = connection.loop.time()
        self._idle.append(connection)

    def close(self) -> None:
        """Close the idle connections (the backend is retired or the gateway stops)."""
        for connection in self._idle:
            connection.close(at_once=True)
        self._idle.clear()


class Exchange:
    """One request/response over one connection; the caller streams both bodies through it.

    The common case (a small response arriving in one read) costs one future and one timer:
    headers and body are both there when the first wait ends.
    """

    __slots__ = ("_head_only", "connection", "origin")

    def __init__(self, origin: Origin, connection: UpstreamConnection, head_only: bool) -> None:
        self.origin = origin
        self.connection = connection
        self._head_only = head_only

    def write(self, data: bytes) -> None:
        transport = self.connection.transport
        if self.connection.closed or transport is None:
            raise self.connection.error or UpstreamError("the backend closed the connection")
        transport.write(data)

    async def drain(self) -> None:
        await self.connection.drain()

    async def _wait(self) -> None:
        """Wait for the next parser event, failing after the backend's read timeout."""
        connection = self.connection
        loop = connection.loop
        waiter = connection.waiter = loop.create_future()
        timer = loop.call_later(self.origin.read_timeout, self._on_timeout)
        try:
            await waiter
        finally:
            timer.cancel()
            connection.waiter = None

    def _on_timeout(self) -> None:
        self.connection.fail(
            UpstreamTimeout(f"the backend sent nothing for {self.origin.read_timeout}s")
        )

    async def response_head(self) -> tuple[int, Headers]:
        """Wait for the status line and headers."""
        connection = self.connection
        while not connection.headers_done:
            if connection.error is not None:
                raise connection.error
            await self._wait()
        if self._head_only:
            # A HEAD response has no body whatever its Content-Length says; httptools cannot be
            # told so, so this connection is not reused.
            connection.complete = True
            connection.keep_alive = False
        return connection.status, connection.headers

    @property
    def complete(self) -> bool:
        return self.connection.complete

    async def next_chunk(self) -> tuple[bytes, bool]:
        """The body bytes received so far (waiting if there are none) and whether more follow."""
        connection = self.connection
        while not connection.chunks and not connection.complete:
            if connection.error is not None:
                raise connection.error
            await self._wait()
        data = connection.take_chunks() if connection.chunks else b""
        return data, not connection.complete

    def finish(self) -> None:
        """Return the connection to the pool (or close it when it cannot be reused)."""
        self.origin.release(self.connection)

    def abort(self) -> None:
        self.connection.close()

    def abort_with(self, error: UpstreamError) -> None:
        """Close the connection and make whoever waits on it see ``error``."""
        self.connection.fail(error)
