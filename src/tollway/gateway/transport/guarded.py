"""uvicorn's httptools protocol with the client-side limits an Internet-facing server needs.

``GuardedProtocol`` bounds what one client can make the process hold and for how long:

- request heads: request line (414), each header line, the whole head and the header count
  (431). httptools buffers a partial header internally before any callback, so the bytes of an
  incomplete head are also counted as they arrive: an endless header line is cut at the head
  limit, not when it ends;
- strict framing and versions (``http_refusals.check_head``): 400/405/501/505;
- a head timeout, a body-idle timeout and the keep-alive timeout (408 or a silent close);
- a per-process connection cap with eviction of idle connections (``connections``).

Every refusal is problem+json with ``Connection: close``. ``GatewayProtocol``
(``tollway.gateway.transport.fastpath``) adds the fast path on top; both transports share these
limits.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tollway.gateway.exchange.gateway import Gateway
from tollway.gateway.transport.connections import ConnectionBook
from tollway.gateway.transport.http_limits import HttpLimits
from tollway.gateway.transport.http_refusals import (
    HEAD_TOO_LARGE,
    REQUEST_LINE_TOO_LONG,
    REQUEST_TIMEOUT,
    TOO_MANY_CONNECTIONS,
    Refusal,
    check_head,
    parse_refusal,
)
from tollway.settings import Settings

REQUEST_LINE_FRAME = 10  # the spaces, " HTTP/1.1" and CRLF around method and target
# After a refusal the client may still be sending (an endless header, a body): its bytes are
# read and dropped for a while so that closing does not reset the connection before the client
# has read the answer (nginx's lingering_close). Bounded in time and bytes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

_limits_by_gateway: weakref.WeakKeyDictionary[Gateway, HttpLimits] = weakref.WeakKeyDictionary()


def find_gateway(app: Any) -> Gateway | None:
    """The Gateway inside whatever wrappers uvicorn put around the app."""
    for _ in range(10):
        if isinstance(app, Gateway):
            return app
        app = getattr(app, "app", None)
    return None


def limits_for(gateway: Gateway | None) -> HttpLimits:
    """The gateway's limits, built once (defaults for any other app)."""
    if gateway is None:
        return default_limits()
    limits = _limits_by_gateway.get(gateway)
    if limits is None:
        limits = _limits_by_gateway[gateway] = HttpLimits.from_settings(gateway.settings)
    return limits


@functools.cache
def default_limits() -> HttpLimits:
    return HttpLimits.from_settings(Settings())


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1 protocol with bounded heads, strict framing, timeouts and a cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = find_gateway(self.app)
        self.limits = limits_for(self.gateway)
        # Tollway's setting, whatever server started the protocol (uvicorn types it int; any
        # number of seconds works with call_later).
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self.book: ConnectionBook | None = None
        self.reading_head = True  # False from a head's end to its message's end
        self.head_since: float | None = None  # when the head now being awaited was started
        self.head_bytes = 0  # bytes received while the current head is incomplete
        self.last_read = 0.0
        self.refused = False
        self.linger_bytes = 0  # what a refused client may still send before the close

    # connection -----------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.head_since = self.loop.time()  # a new connection owes a head (as nginx)
        self.book = ConnectionBook.of(self.loop)
        limits = self.limits
        if not self.book.admit(self, limits.max_connections, limits.tick):
            # Answered at once and closed without lingering: a refused connection must not
            # hold a descriptor beyond the cap for long.
            detail = f"This process serves at most {limits.max_connections} connections."
            refusal = Refusal(TOO_MANY_CONNECTIONS, detail)
            self.refused = True
            transport.write(refusal.response(self.server_state.default_headers))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.book is not None:
            self.book.forget(self)
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        if self.book is not None:
            self.book.forget(self)  # the WebSocket protocol counts the connection from here
        super().handle_websocket_upgrade()

    def evict(self) -> None:
        """Make room for a new connection (this one is only waiting for a request head)."""
        self.refused = True
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            if self.linger_bytes > 0:  # answered and half-closed: drop, up to a bound
                self.linger_bytes -= len(data)
                if self.linger_bytes <= 0:
                    self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self.reading_head:
            if self.head_since is None:
                self.head_since = self.loop.time()
            self.head_bytes += len(data)
        else:
            self.last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            self.refuse(parse_refusal(error))
            return
        if self.reading_head and self.head_bytes > self.limits.max_head:
            # Still no end of head: the parser is buffering one endless line or header block.
            detail = f"The request head is larger than {self.limits.max_head} bytes."
            self.refuse(Refusal(HEAD_TOO_LARGE, detail))

    # parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_since is None:
            self.head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url
        limit = self.limits.max_request_line
        if len(self.url) + len(self.parser.get_method()) + REQUEST_LINE_FRAME > limit:
            detail = f"The request line is longer than {limit} bytes."
            raise Refusal(REQUEST_LINE_TOO_LONG, detail)

    def on_headers_complete(self) -> None:
        parser = self.parser
        refusal = check_head(
            parser.get_method(),
            parser.get_http_version(),
            self.headers,
            len(self.url),
            self.limits,
        )
        if refusal is not None:
            raise refusal  # httptools stops; data_received answers it
        self.reading_head = False
        self.head_since = None
        self.last_read = self.loop.time()
        if self.book is not None:
            self.book.busy(self)
        self.begin_request()

    def begin_request(self) -> None:
        """Handle a request whose head passed every check (uvicorn's ASGI cycle)."""
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.reading_head = True
        self.head_bytes = 0
        self.end_request_body()

    def end_request_body(self) -> None:
        """The request's body is complete (uvicorn's ASGI cycle)."""
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if self.refused or self.transport.is_closing() or not cycle.response_complete:
            return  # closing, or a pipelined request has started
        if self.reading_head and self.book is not None:
            self.book.waiting(self)
            if self.head_since is not None:  # a pipelined head was waiting: its time starts now
                self.head_since = self.loop.time()

    # deadlines and refusals -----------------------------------------------------------------
    def check_deadlines(self, now: float) -> None:
        """Close a connection whose client is too slow (called by the book's sweep)."""
        if self.refused or self.transport.is_closing():
            return
        limits = self.limits
        if self.reading_head:
            since = self.head_since
            if since is None or now - since < limits.head_timeout or self._in_flight():
                return
            if self.head_bytes == 0:
                self.evict()  # never started a request: close quietly, as keep-alive does
                return
            detail = f"The request head did not arrive within {limits.head_timeout:g} s."
            self.refuse(Refusal(REQUEST_TIMEOUT, detail))
        elif self._holding_body():
            self.last_read = now  # the gateway is holding the body back, not the client
        elif now - self.last_read >= limits.body_timeout:
            detail = f"The request body stalled for {limits.body_timeout:g} s."
            self.refuse(Refusal(REQUEST_TIMEOUT, detail))

    def _holding_body(self) -> bool:
        """Reading is paused, or the client waits for our "100 Continue" before its body."""
        waiting = getattr(self.cycle, "waiting_for_100_continue", False)
        return self.flow.read_paused or (self.expect_100_continue and waiting)

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def refuse(self, refusal: Refusal) -> None:
        """Answer the request being read with ``refusal`` and close the connection."""
        if self.refused:
            return
        self.refused = True
        if self.book is not None:
            self.book.busy(self)
        cycle = self.cycle
        if not self._in_flight():
            if self.reading_head:
                self.send_refusal(refusal)  # the usual case: a bad or slow head
            else:
                self.transport.close()  # answered already; the body never finished
        elif self.pipeline:
            self.transport.close()  # earlier pipelined requests are unanswered: just close
        elif self.reading_head:
            cycle.keep_alive = False  # finish the response in flight, then close
            self.flow.pause_reading()
        elif not cycle.response_started:
            self.abort_request(refusal)
        else:
            self.transport.close()

    def abort_request(self, refusal: Refusal) -> None:
        """End the request in flight (its body broke off) with ``refusal``."""
        cycle = self.cycle
        cycle.disconnected = True  # the app's receive() sees a disconnect, its send() is dropped
        cycle.message_event.set()
        self.send_refusal(refusal)

    def send_refusal(self, refusal: Refusal) -> None:
        """Send ``refusal``, half-close, and drop what the client still sends for a while."""
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(refusal.response(self.server_state.default_headers))
        if not transport.can_write_eof():  # TLS
            transport.close()
            return
        transport.write_eof()
        self.linger_bytes = LINGER_BYTES
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, transport.close)
        if self.book is not None:
            self.book.waiting(self)  # a lingering connection gives way to new ones
