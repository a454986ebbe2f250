"""The backend side of a proxied WebSocket: an HTTP origin or an in-process ASGI app.

:func:`open_socket` opens the session to the route's backend and returns an
:class:`UpstreamSocket`: one way to receive, send and close, whatever the backend is.

- ``url:`` backends: the ``websockets`` library's asyncio client (the library uvicorn uses for
  the client side; no hand-written framing), over ``ws://`` or ``wss://`` to the backend's host
  with its base path. The backend's ``headers:`` are sent on the upgrade; the ``Host`` header is
  the backend's (``websockets`` writes it).
- ``app:`` backends: the app is called with an ASGI ``websocket`` scope, through two queues.

An upgrade the backend refuses with an HTTP answer raises :class:`SocketRefused` (the gateway
relays that answer); no answer raises ``UpstreamError``/``UpstreamTimeout``. Once open, the end
of the session is a :class:`SocketClosed` from :meth:`UpstreamSocket.recv`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote_to_bytes

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from tollway.gateway.upstream.backends import AppBackend, HttpBackend, filter_response_headers
from tollway.gateway.upstream.client import UpstreamError, UpstreamTimeout
from tollway.types import Headers, Message, Scope

logger = logging.getLogger("tollway.gateway")
frames_logger = logging.getLogger("tollway.gateway.websocket.backend")  # (the library's debug)

Data = str | bytes
CLOSE_TIMEOUT = 5.0  # how long a closing handshake with the backend may take
TOO_BIG = 1009
ABNORMAL = 1006  # no close frame: the connection just ended (never sent on the wire)
# Messages read ahead from a backend while the client is slower (each up to the session's
# max_message_bytes): what one session may hold in memory beyond the message in flight.
BACKEND_QUEUE = 4
APP_QUEUE = 4  # the same each way with an in-process app (then the sender waits)


@dataclass(slots=True)
class SocketRequest:
    """The upgrade as the backend gets it (headers already cleaned by ``forwarding``)."""

    path: bytes  # normalised, percent-encoded, below the API prefix
    query: bytes  # without the subscription key
    headers: Headers  # cleaned: no hop-by-hop, no key, X-Forwarded-* set, no Host
    host: bytes  # the client's Host header
    subprotocols: list[str]
    scope: Scope  # the client's websocket scope (client, server, scheme)
    open_timeout: float | None = None  # the ``timeout`` policy, else connect + read timeouts


@dataclass(slots=True)
class SocketRefused(Exception):
    """The backend answered the upgrade with an HTTP response instead of accepting it."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


class SocketClosed(Exception):
    """The backend side ended: its close code and reason, or ``too_big`` (a message over the
    session's limit) or ``ABNORMAL`` (no close frame)."""

    def __init__(self, code: int, reason: str = "", *, too_big: bool = False) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.too_big = too_big


class UpstreamSocket(Protocol):
    subprotocol: str | None

    async def recv(self) -> Data:
        """The backend's next message; raises :class:`SocketClosed` when it has ended."""

    async def send(self, data: Data) -> None:
        """Send a message to the backend (dropped once the backend has gone)."""

    async def close(self, code: int, reason: str) -> None:
        """Close the backend side (a no-op once closed); bounded in time."""


def _upgrade_headers(headers: Headers, extra: Headers) -> Headers:
    """What the backend gets: the client's cleaned headers without the client's own handshake
    (the gateway's side makes its own), the backend's configured headers last."""
    replaced = {name for name, _ in extra}
    kept = [
        (name, value)
        for name, value in headers
        if not name.startswith(b"sec-websocket-") and name not in replaced
    ]
    return kept + extra


async def open_socket(backend: object, request: SocketRequest, max_size: int) -> UpstreamSocket:
    """Open the session to ``backend``; messages from it over ``max_size`` bytes end it."""
    if isinstance(backend, HttpBackend):
        return await HttpSocket.open(backend, request, max_size)
    if isinstance(backend, AppBackend):
        return await AppSocket.open(backend, request, max_size)
    raise UpstreamError(f"{type(backend).__name__} backends do not take WebSockets")


class HttpSocket:
    """A session with a ``url:`` backend, over the ``websockets`` client."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.subprotocol: str | None = connection.subprotocol

    @classmethod
    async def open(cls, backend: HttpBackend, request: SocketRequest, max_size: int) -> HttpSocket:
        if backend.unusable is not None:
            raise UpstreamError(backend.unusable)
        origin = backend.pool.pick()  # a target in rotation (NoTargetAvailable when none is)
        host = f"[{origin.host}]" if ":" in origin.host else origin.host
        target = origin.base_path + request.path
        if request.query:
            target += b"?" + request.query
        scheme = "wss" if origin.ssl is not None else "ws"
        uri = f"{scheme}://{host}:{origin.port}{target.decode('latin-1')}"
        headers = _upgrade_headers(request.headers, backend.extra_headers)
        wait = request.open_timeout or origin.connect_timeout + origin.read_timeout
        try:
            connection = await connect(
                uri,
                additional_headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                subprotocols=request.subprotocols or None,  # type: ignore[arg-type]
                user_agent_header=None,  # (the client's, if it sent one, is among the headers)
                proxy=None,  # the backend's address is the configured one, never a proxy's
                ssl=origin.ssl,
                server_hostname=origin.server_name if origin.ssl is not None else None,
                open_timeout=wait,
                close_timeout=CLOSE_TIMEOUT,
                max_size=max_size,
                max_queue=BACKEND_QUEUE,
                logger=frames_logger,
            )
        except InvalidStatus as refused:
            response = refused.response
            status = response.status_code
            raw = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.raw_items()
            ]
            raise SocketRefused(
                status, filter_response_headers(raw), bytes(response.body or b"")
            ) from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"the backend did not accept the upgrade within {wait:g}s"
            ) from None
        except (OSError, WebSocketException) as exc:  # (refused, reset, not a WebSocket...)
            raise UpstreamError(f"WebSocket upgrade failed: {exc}") from None
        return cls(connection)

    async def recv(self) -> Data:
        try:
            return await self.connection.recv()
        except ConnectionClosed as closed:
            raise _closed(closed) from None

    async def send(self, data: Data) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(data)

    async def close(self, code: int, reason: str) -> None:
        await self.connection.close(code, reason)


def _closed(closed: ConnectionClosed) -> SocketClosed:
    sent, rcvd = closed.sent, closed.rcvd
    if (
        sent is not None
        and sent.code == TOO_BIG
        and (rcvd is None or closed.rcvd_then_sent is False)
    ):
        return SocketClosed(TOO_BIG, sent.reason, too_big=True)
    if rcvd is not None:
        return SocketClosed(rcvd.code, rcvd.reason)
    return SocketClosed(ABNORMAL)


class AppSocket:
    """A session with an ``app:`` backend: the app runs as a task, messages go through queues."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.subprotocol: str | None = None
        self.to_app: asyncio.Queue[Message] = asyncio.Queue(APP_QUEUE)
        self.from_app: asyncio.Queue[Message | None] = asyncio.Queue(APP_QUEUE)  # None: it ended
        self.task: asyncio.Task[None] | None = None
        self.closed = False  # the app closed or ended, or was told the session ended
        self.disconnected = False  # the app was sent its websocket.disconnect

    @classmethod
    async def open(cls, backend: AppBackend, request: SocketRequest, max_size: int) -> AppSocket:
        socket = cls(max_size)
        client_scope = request.scope
        headers: Headers = [(b"host", request.host)] if request.host else []
        headers += _upgrade_headers(request.headers, backend.extra_headers)
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": client_scope.get("scheme", "ws"),
            "path": unquote_to_bytes(request.path).decode("utf-8", "replace"),
            "raw_path": request.path,
            "query_string": request.query,
            "root_path": "",
            "headers": headers,
            "client": client_scope.get("client"),
            "server": client_scope.get("server"),
            "subprotocols": request.subprotocols,
            "extensions": {"websocket.http.response": {}},
        }
        if (state := backend.lifespan_state()) is not None:
            scope["state"] = state
        socket.task = asyncio.get_running_loop().create_task(socket._run(backend, scope))
        await socket.to_app.put({"type": "websocket.connect"})
        wait = request.open_timeout or backend.read_timeout
        try:
            async with asyncio.timeout(wait):
                await socket._handshake()
        except TimeoutError:
            await socket.close(1001, "")
            raise UpstreamTimeout(f"the in-process app did not accept within {wait:g}s") from None
        except BaseException:
            await socket.close(1001, "")
            raise
        return socket

    async def _run(self, backend: AppBackend, scope: Scope) -> None:
        try:
            await backend.app(scope, self._app_receive, self._app_send)
        except Exception:
            if not self.disconnected:  # (after the end, its sends fail: not its fault)
                logger.exception("in-process WebSocket backend raised an exception")
        finally:
            if not self.disconnected:  # (once told, nobody reads: the task is awaited or cancelled)
                await self.from_app.put(None)

    async def _app_receive(self) -> Message:
        return await self.to_app.get()

    async def _app_send(self, message: Message) -> None:
        if self.disconnected:  # (as a server does, ASGI 2.4: the app stops sending)
            raise OSError("the WebSocket session has ended")
        await self.from_app.put(message)  # (waits while the client is slow: back-pressure)

    async def _handshake(self) -> None:
        message = await self.from_app.get()
        kind = None if message is None else message["type"]
        if message is not None and kind == "websocket.accept":
            self.subprotocol = message.get("subprotocol")
            return
        if message is not None and kind == "websocket.http.response.start":
            refused = SocketRefused(
                message["status"], filter_response_headers(message.get("headers", []))
            )
            while (part := await self.from_app.get()) is not None:
                refused.body += part.get("body", b"")
                if not part.get("more_body", False):
                    break
            raise refused
        if message is not None and kind == "websocket.close":
            raise SocketRefused(403)  # what a server answers an app that closes before accepting
        raise UpstreamError("the in-process app ended without accepting the WebSocket")

    async def recv(self) -> Data:
        while True:
            message = await self.from_app.get()
            if message is None:
                self.closed = True
                raise SocketClosed(ABNORMAL)
            kind = message["type"]
            if kind == "websocket.close":
                self.closed = True
                raise SocketClosed(message.get("code", 1000), message.get("reason") or "")
            if kind != "websocket.send":
                continue
            data: Data = (
                message["text"] if message.get("text") is not None else message.get("bytes", b"")
            )
            size = len(data.encode()) if isinstance(data, str) else len(data)
            if size > self.max_size:
                raise SocketClosed(TOO_BIG, f"message over {self.max_size} bytes", too_big=True)
            return data

    async def send(self, data: Data) -> None:
        if self.closed:
            return  # (the app has ended or been told to)
        key = "text" if isinstance(data, str) else "bytes"
        await self.to_app.put({"type": "websocket.receive", key: data})

    async def close(self, code: int, reason: str) -> None:
        if not self.disconnected:
            self.disconnected = self.closed = True
            if self.to_app.full():  # the disconnect must reach the app: make room for it
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.to_app.get_nowait()
            self.to_app.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        await self._stop()

    async def _stop(self) -> None:
        """Let the app end after its disconnect (bounded in time), else cancel it."""
        task = self.task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
