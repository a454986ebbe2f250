"""A lean Redis client for the hot path: one pipelined connection, RESP over an asyncio
protocol, replies parsed by hiredis.

redis-py's asyncio client spends ~150-200 µs of Python per command here; limits need one
``EVALSHA`` per request, so that is most of what Redis mode costs. This client writes the
command and resolves a future when the reply arrives, in order, with no task per call. It only
does what the counters need (EVALSHA/EVAL and plain commands); redis-py stays for the rest.

It speaks plain TCP or TLS (an ``ssl.SSLContext`` built by redis-py from the URL's options), to
a fixed address or to one found when connecting (``locate``: the master Sentinel names, the
Cluster node of the counters' slot). One connection also means one TLS handshake, not one per
pooled connection under a burst.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import RedisError

SWEEP_EVERY = 0.25


class RespError(Exception):
    """Redis could not be reached, timed out, or answered with an error."""


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection(asyncio.Protocol):
    """Commands go out as they come; replies resolve the oldest waiting future."""

    def __init__(self, timeout: float) -> None:
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.timeout = timeout
        self.closed = False
        self.sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no subclass)

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.closed or self.transport is None:
            future.set_exception(RespError("connection closed"))
            return future
        self.waiting.append((future, time.monotonic()))
        self.transport.write(encode(args))
        if self.sweeper is None:
            self.sweeper = loop.call_later(SWEEP_EVERY, self._sweep)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                self._fail(RespError("reply without a request"))
                return
            future, _ = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RespError(str(reply)))
            else:
                future.set_result(reply)

    def _sweep(self) -> None:
        """Time out a connection whose oldest request has waited too long (one timer, not one
        per call)."""
        self.sweeper = None
        if self.closed or not self.waiting:
            return
        if time.monotonic() - self.waiting[0][1] > self.timeout:
            self._fail(RespError(f"no reply from redis within {self.timeout}s"))
            return
        self.sweeper = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RespError("connection lost"))

    def _fail(self, error: RespError) -> None:
        self.closed = True
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()  # (see RespClient.close)


Locate = Callable[[], Awaitable[tuple[str, int]]]
"""Where the server is now (asked on every new connection)."""


class RespClient:
    """One pipelined connection per event loop, made again when it breaks."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        locate: Locate | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.username = username
        self.password = password
        self.tls = tls
        self.locate = locate
        self.timeout = timeout
        self.connection: RespConnection | None = None
        self.connecting: asyncio.Future[RespConnection] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(cls, url: str, tls: ssl.SSLContext | None = None) -> RespClient:
        """For ``redis://`` or (with ``tls``) ``rediss://host:port/db`` URLs."""
        parts = urlsplit(url)
        db = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]  # (as redis-py)
        if parts.scheme != ("rediss" if tls else "redis"):
            raise ValueError(f"the lean client does not speak {parts.scheme}:// (TLS: {bool(tls)})")
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            db=int(db),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def ready(self) -> RespConnection | None:
        """The open connection, if it belongs to the running loop."""
        connection = self.connection
        if connection is None or connection.closed:
            return None
        if self.loop is not asyncio.get_running_loop():
            self.close()  # made in another event loop: unusable here
            return None
        return connection

    async def connect(self) -> RespConnection:
        if self.connecting is None:
            self.connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self.connecting)
        finally:
            if self.connecting is not None and self.connecting.done():
                self.connecting = None

    async def _connect(self) -> RespConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                host, port = await self.locate() if self.locate else (self.host, self.port)
                _, connection = await loop.create_connection(
                    lambda: RespConnection(self.timeout),
                    host,
                    port,
                    ssl=self.tls,
                    server_hostname=host if self.tls else None,
                )
                if self.password is not None:
                    auth = (self.username, self.password) if self.username else (self.password,)
                    await connection.call("AUTH", *auth)
                if self.db:
                    await connection.call("SELECT", self.db)
        except (OSError, TimeoutError, RedisError) as exc:  # (ssl.SSLError is an OSError)
            raise RespError(f"cannot connect to redis: {type(exc).__name__}") from None
        self.connection = connection
        self.loop = loop
        return connection

    async def call(self, *args: Any) -> Any:
        connection = self.ready() or await self.connect()
        return await connection.call(*args)

    def close(self) -> None:
        """Drop the connection now. (abort, not close: over TLS, close waits for a polite TLS
        shutdown that a closing event loop may never finish, leaving the socket open.)"""
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.abort()
        self.connection = None
