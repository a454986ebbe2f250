"""Backends at request time: an HTTP(S) origin, or an in-process ASGI app called directly.

Both take an :class:`UpstreamRequest` (headers already cleaned by ``forwarding``) and stream the
response to the client's ``send``; both report what happened as a :class:`ForwardResult`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote_to_bytes, urlsplit

from tollway.errors import UserError
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.upstream.client import (
    Exchange,
    StaleConnection,
    UpstreamConnection,
    UpstreamError,
    UpstreamTimeout,
)
from tollway.gateway.upstream.pool import Pool, PoolSettings, tls_context
from tollway.types import ASGIApp, Headers, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.gateway")

STARTUP_TIMEOUT = 60.0
CLIENT_CLOSED = 499  # recorded when the client goes away before the response is complete
# A request whose body is complete and at most this big is replayed once on a fresh connection
# when a pooled one turns out to be closed before anything came back; larger or still-streaming
# bodies are not (they may be gone). The same rule on both transports.
REPLAY_LIMIT = 64 * 1024


def replayable(framing: int, body_complete: bool, body_bytes: int) -> bool:
    """The stale-connection replay rule, for every transport: a request whose pooled
    connection turned out to be closed before anything came back may be sent once more on a
    fresh one when it has no body, or its whole body is here and at most ``REPLAY_LIMIT``
    bytes (a larger or still-streaming body may be gone)."""
    return framing == BodyFraming.NONE or (body_complete and body_bytes <= REPLAY_LIMIT)


HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class BodyFraming:
    NONE = 0
    LENGTH = 1
    CHUNKED = 2


@dataclass(slots=True)
class UpstreamRequest:
    """What to send to the backend: everything the gateway decided about the request."""

    method: str
    path: bytes  # normalised, percent-encoded, below the API prefix
    query: bytes
    headers: Headers  # cleaned: no hop-by-hop, no key, X-Forwarded-* set, no Host
    host: bytes  # the client's Host header
    framing: int
    scope: Scope  # the client's scope (client, scheme, http_version, extensions)
    prefix: bytes = b""  # the API's path on the gateway (backend redirects are moved under it)
    head_timeout: float | None = None  # the timeout policy: forwarding -> response head
    trace: CallTrace | None = None  # the call's ids and notes (upstream time), for recording


class ResponseAborted(Exception):
    """The backend failed after the response had started; the client connection is cut."""

    def __init__(self, reason: str, status: int, bytes_out: int) -> None:
        super().__init__(reason)
        self.status = status
        self.bytes_out = bytes_out


@dataclass(slots=True)
class ForwardResult:
    status: int
    bytes_in: int
    bytes_out: int


class BackendTarget(Protocol):
    async def forward(
        self, request: UpstreamRequest, receive: Receive, send: Send
    ) -> ForwardResult:
        """Send the request to the backend and stream its response to ``send``."""

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...

    def describe(self) -> tuple[str, list[dict[str, object]]] | None:
        """The backend's name and its targets' health and circuit state (``/-/ready``)."""


# Not passed back to the client: hop-by-hop headers, and the request id the gateway writes
# itself (a backend's own would be a second, different one; gateway/calltrace.py).
NOT_PASSED_BACK = HOP_BY_HOP | {b"x-request-id"}


def filter_response_headers(headers: Headers) -> Headers:
    return [(name, value) for name, value in headers if name not in NOT_PASSED_BACK]


class HttpBackend:
    """Forwards over pooled keep-alive HTTP/1.1 connections to a pool of base URLs (targets).

    The transports ask it for a connection (:meth:`take_idle`, else :meth:`connect`, which may
    raise :class:`~tollway.gateway.upstream.client.NoTargetAvailable`), write
    :meth:`head_for` that connection and give it back with :meth:`release`.
    """

    def __init__(
        self,
        name: str,
        settings: PoolSettings,
        *,
        connect_timeout: float,
        read_timeout: float,
        preserve_host: bool,
        headers: Headers,
    ) -> None:
        self.name = name
        self.read_timeout = read_timeout
        self.unusable: str | None = None  # TLS files that could not be loaded, say which
        ssl_context = None
        tls = settings.tls
        if tls is not None and any(urlsplit(url).scheme == "https" for url, _ in settings.targets):
            if not tls.verify:
                logger.warning(
                    "backend %s: TLS certificate verification is off (tls.verify: false)", name
                )
            try:
                ssl_context = tls_context(tls)
            except (OSError, ValueError) as exc:  # (ssl.SSLError is an OSError)
                self.unusable = f"backend {name!r}: its TLS settings cannot be used: {exc}"
                logger.error("%s", self.unusable)
        self.pool = Pool(
            name,
            settings,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl_context=ssl_context,
        )
        self.origin = self.pool.primary  # the head is written for it (head_for: other targets)
        # A pooled connection to the target this call goes to, or None (then connect()); and
        # giving it back. With one target that never leaves rotation, straight to its Origin.
        single = self.pool.single
        self.take_idle: Callable[[], UpstreamConnection | None] = (
            single.take_idle if single is not None else self.pool.take_idle
        )
        self.release: Callable[[UpstreamConnection], None] = (
            single.release if single is not None else self.pool.release
        )
        # "http://backend:8000/base" as each target writes it in its own redirects
        self._own_urls = [
            f"{urlsplit(target.url).scheme}://".encode() + target.host_header + target.base_path
            for target in self.pool.targets
        ]
        self.preserve_host = preserve_host
        self.extra_headers = headers
        self._extra_names = frozenset(name for name, _ in headers)

    async def startup(self) -> None:
        self.pool.start(b"".join(b"%b: %b\r\n" % header for header in self.extra_headers))

    async def shutdown(self) -> None:
        await self.pool.stop()

    def describe(self) -> tuple[str, list[dict[str, object]]] | None:
        return self.name, self.pool.describe()

    # connections, for both transports ---------------------------------------------------------
    async def connect(self) -> UpstreamConnection:
        """A new connection; raises NoTargetAvailable when every target is out of rotation."""
        if self.unusable is not None:
            raise UpstreamError(self.unusable)
        return await self.pool.connect()

    def head_for(self, connection: UpstreamConnection, head: bytes) -> bytes:
        """``head`` (from :meth:`request_head`) with the Host of the connection's target."""
        target = connection.owner
        if target is self.origin or target is None or self.preserve_host:
            return head
        old = b"\r\nhost: " + self.origin.host_header + b"\r\n"
        return head.replace(old, b"\r\nhost: " + target.host_header + b"\r\n", 1)

    def client_location(self, location: bytes, prefix: bytes) -> bytes:
        """A redirect to the backend's own URL, moved under the API's prefix on the gateway.

        What nginx's ``proxy_redirect default`` does: ``http://backend:8000/base/x`` becomes
        ``/api/x``, so a client never gets sent round the gateway (or to an address it cannot
        reach). Other locations pass unchanged.
        """
        for own in self._own_urls:
            if location.startswith(own):
                rest = location[len(own) :]
                if not rest or rest[:1] in (b"/", b"?", b"#"):
                    return prefix + (rest if rest[:1] == b"/" else b"/" + rest)
        return location

    def client_headers(self, headers: Headers, prefix: bytes) -> Headers:
        """The backend's response headers as the client gets them (before policy edits):
        hop-by-hop ones dropped, ``Location`` moved under the prefix."""
        return [
            (n, self.client_location(v, prefix) if n == b"location" else v)
            for n, v in filter_response_headers(headers)
        ]

    def request_head(self, request: UpstreamRequest) -> bytes:
        """The request line and headers as sent to this backend."""
        target = self.origin.base_path + request.path
        if request.query:
            target += b"?" + request.query
        host = request.host if self.preserve_host and request.host else self.origin.host_header
        lines = [request.method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
        for name, value in request.headers:
            if name not in self._extra_names:
                lines += (name, b": ", value, b"\r\n")
        for name, value in self.extra_headers:
            lines += (name, b": ", value, b"\r\n")
        if request.framing == BodyFraming.CHUNKED:
            lines.append(b"transfer-encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def forward(
        self, request: UpstreamRequest, receive: Receive, send: Send
    ) -> ForwardResult:
        head = self.request_head(request)
        first: Message | None = None
        if request.framing != BodyFraming.NONE:
            first = await receive()
        may_replay = first is None or replayable(
            request.framing, not first.get("more_body", False), len(first.get("body", b""))
        )
        exchange: Exchange | None = None
        if request.trace is not None:
            request.trace.forwarded()
        try:
            async with asyncio.timeout(request.head_timeout):
                for attempt in (1, 2):
                    # (the retry after a stale pooled connection takes a new one, as the fast path)
                    connection = (
                        self.take_idle() if attempt == 1 else None
                    ) or await self.connect()
                    origin = connection.owner
                    assert origin is not None
                    exchange = Exchange(origin, connection, head_only=request.method == "HEAD")
                    try:
                        sent = self.head_for(connection, head)
                        bytes_in = await self._send_request(exchange, sent, request, first, receive)
                        status, headers = await exchange.response_head()
                        break
                    except StaleConnection:
                        exchange.abort()
                        if attempt == 2 or not may_replay:
                            raise UpstreamError("the backend closed a pooled connection") from None
                    except BaseException:
                        exchange.abort()
                        raise
        except TimeoutError:
            error = UpstreamTimeout(
                f"the backend sent no response head within {request.head_timeout}s"
            )
            if exchange is not None:
                exchange.abort_with(error)  # (a timeout counts against the target)
            raise error from None
        assert exchange is not None
        if request.trace is not None:
            request.trace.responded()
        return await self._stream_response(
            exchange, request, status, headers, bytes_in, send, receive
        )

    async def _send_request(
        self,
        exchange: Exchange,
        head: bytes,
        request: UpstreamRequest,
        first: Message | None,
        receive: Receive,
    ) -> int:
        if first is None:
            exchange.write(head)
            return 0
        chunked = request.framing == BodyFraming.CHUNKED
        message: Message = first
        exchange.write(head)
        sent = 0
        while True:
            body: bytes = message.get("body", b"")
            if message["type"] == "http.disconnect":
                raise UpstreamError("the client went away while sending its body")
            if body:
                sent += len(body)
                exchange.write(b"%x\r\n%b\r\n" % (len(body), body) if chunked else body)
                await exchange.drain()
            if not message.get("more_body", False):
                break
            message = await receive()
        if chunked:
            exchange.write(b"0\r\n\r\n")
        return sent

    async def _stream_response(
        self,
        exchange: Exchange,
        request: UpstreamRequest,
        status: int,
        headers: Headers,
        bytes_in: int,
        send: Send,
        receive: Receive,
    ) -> ForwardResult:
        start = {"type": "http.response.start", "status": status}
        headers = self.client_headers(headers, request.prefix)
        await send({**start, "headers": headers})
        bytes_out = 0
        watch: asyncio.Task[None] | None = None  # ends (done) when the client has left
        try:
            more = True
            while more:
                chunk, more = await exchange.next_chunk()
                bytes_out += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if more and watch is None:  # a streamed answer: notice the client leaving
                    watch = asyncio.create_task(_watch_disconnect(receive, exchange))
        except UpstreamError as exc:
            exchange.abort()
            if watch is not None and watch.done():
                raise ResponseAborted("the client went away", CLIENT_CLOSED, bytes_out) from None
            raise ResponseAborted(str(exc), status, bytes_out) from None
        except BaseException:
            exchange.abort()
            raise
        finally:
            if watch is not None:
                watch.cancel()
        exchange.finish()
        return ForwardResult(status, bytes_in, bytes_out)


async def _watch_disconnect(receive: Receive, exchange: Exchange) -> None:
    """Drop the backend connection the moment the client disconnects (uvicorn's ``send``
    ignores writes to a closed connection, so the stream would otherwise run to its end)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    exchange.abort_with(UpstreamError("the client went away"))


class AppBackend:
    """Calls an ASGI app in the same process, with no socket in between."""

    def __init__(self, app: ASGIApp, *, read_timeout: float, headers: Headers) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.extra_headers = headers
        self._extra_names = frozenset(name for name, _ in headers)
        self._lifespan: _Lifespan | None = None

    @classmethod
    def from_reference(cls, reference: str, *, read_timeout: float, headers: Headers) -> AppBackend:
        return cls(load_app(reference), read_timeout=read_timeout, headers=headers)

    async def startup(self) -> None:
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()

    async def shutdown(self) -> None:
        if self._lifespan is not None:
            await self._lifespan.shutdown()

    def describe(self) -> tuple[str, list[dict[str, object]]] | None:
        return None

    def lifespan_state(self) -> dict[str, object] | None:
        """A copy of the state the app's lifespan set up, for a request's scope."""
        if self._lifespan is None or self._lifespan.state is None:
            return None
        return dict(self._lifespan.state)

    async def forward(
        self, request: UpstreamRequest, receive: Receive, send: Send
    ) -> ForwardResult:
        client_scope = request.scope
        headers = [(b"host", request.host)] if request.host else []
        headers += [h for h in request.headers if h[0] not in self._extra_names]
        headers += self.extra_headers
        if request.framing == BodyFraming.CHUNKED:
            headers.append((b"transfer-encoding", b"chunked"))
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": client_scope.get("http_version", "1.1"),
            "method": request.method,
            "scheme": client_scope.get("scheme", "http"),
            "path": unquote_to_bytes(request.path).decode("utf-8", "replace"),
            "raw_path": request.path,
            "query_string": request.query,
            "root_path": "",
            "headers": headers,
            "client": client_scope.get("client"),
            "server": client_scope.get("server"),
            "extensions": {},
        }
        if (state := self.lifespan_state()) is not None:
            scope["state"] = state
        result = ForwardResult(0, 0, 0)
        started = False
        deadline: asyncio.Timeout | None = None
        if request.trace is not None:
            request.trace.forwarded()

        async def counting_receive() -> Message:
            message = await receive()
            result.bytes_in += len(message.get("body", b""))
            return message

        async def backend_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                result.status = message["status"]
                message = {**message, "headers": filter_response_headers(message["headers"])}
                started = True
                if request.trace is not None:
                    request.trace.responded()
                if deadline is not None:
                    deadline.reschedule(None)  # the read timeout covers the wait for a response
            elif message["type"] == "http.response.body":
                result.bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            wait = request.head_timeout or self.read_timeout
            async with asyncio.timeout(wait) as deadline:
                await self.app(scope, counting_receive, backend_send)
        except TimeoutError:
            raise UpstreamTimeout(f"the backend did not answer within {wait}s") from None
        except Exception as exc:
            logger.exception("in-process backend raised an exception")
            if not started:
                raise UpstreamError("the in-process backend failed") from exc
            raise ResponseAborted("the in-process backend failed", result.status, 0) from exc
        if not started:
            raise UpstreamError("the in-process backend returned without responding")
        return result


def load_app(reference: str) -> ASGIApp:
    """Import ``module:attribute`` (attributes may be dotted)."""
    module_name, _, attribute = reference.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load backend app {reference!r}: {exc}") from None
    if not callable(target):
        raise UserError(f"backend app {reference!r} is not an ASGI application")
    return target


class _Lifespan:
    """Runs an in-process app's lifespan protocol, tolerating apps that do not support it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, object] | None = {}
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        try:
            await self.app(scope, self._to_app.get, self._from_app.put)
        except Exception:
            self.state = None  # the app does not speak lifespan; that is allowed
        # An app that returns (or raises) without answering does not support lifespan.
        await self._from_app.put({"type": "lifespan.finished"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        async with asyncio.timeout(STARTUP_TIMEOUT):
            reply = await self._from_app.get()
        if reply["type"] == "lifespan.startup.failed":
            raise UserError(f"in-process backend failed to start: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            async with asyncio.timeout(5):
                await self._from_app.get()
        except TimeoutError:
            self._task.cancel()
