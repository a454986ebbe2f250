"""A WebSocket session through the gateway: messages both ways under the session's limits.

Started by ``gateway/exchange/websocket.py`` once the upgrade is admitted and the backend's side
is open. Three tasks (client to backend, backend to client, one timer for the idle timeout and
the lifetime) run until the first one ends the session; :meth:`Session.finish` then closes
whichever side is still open with the code the ending names:

- a side that closes: the other gets the same code and reason (1005 becomes 1000; a backend
  gone without a close frame, 1006, closes the client with 1011);
- a message over ``max_message_bytes`` either way: 1009 to both;
- the client over ``max_messages_per_second``, or the session past ``max_lifetime``: 1008;
- no message either way for ``idle_timeout``: 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from tollway.gateway.upstream.websocket import ABNORMAL, Data, SocketClosed, UpstreamSocket
from tollway.policies.websocket import MessageRate, SessionLimits
from tollway.types import Receive, Send

logger = logging.getLogger("tollway.gateway")

NORMAL = 1000
GOING_AWAY = 1001
NO_STATUS = 1005  # a close frame without a code (never sent on the wire)
POLICY = 1008
TOO_BIG = 1009
BACKEND_FAILED = 1011
MAX_REASON = 123  # bytes a close reason may have (RFC 6455 §5.5)
# Codes a close frame may carry (RFC 6455 §7.4): the registered ones and the 3000-4999 range.
SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})

Closing = tuple[int, str] | None  # what one side is closed with; None: it has gone already


@dataclass(slots=True)
class Ending:
    """How a session ends: what the client and the backend are closed with."""

    client: Closing
    backend: Closing


def _both(code: int, reason: str) -> Ending:
    return Ending((code, reason), (code, reason))


@dataclass
class Session:
    """Messages both ways under the session's limits, until one side ends it."""

    upstream: UpstreamSocket
    limits: SessionLimits
    receive: Receive
    send: Send
    bytes_in: int = 0  # client -> backend, message payloads
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    closed_with: int = 0  # the code the client's side ended with
    ending: Ending | None = None
    last_message: float = field(default_factory=time.monotonic)
    rate: MessageRate | None = None

    async def run(self) -> None:
        self.rate = self.limits.message_rate()
        tasks = [
            asyncio.create_task(self.from_client()),
            asyncio.create_task(self.from_backend()),
            asyncio.create_task(self.watch()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done))
            failure = first.exception()
            if failure is None:
                self.ending = first.result()
            else:
                logger.error("WebSocket session failed", exc_info=failure)
                self.ending = _both(BACKEND_FAILED, "")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def finish(self) -> None:
        """Close whichever side is still open, as the ending says (bounded in time)."""
        ending = self.ending or _both(GOING_AWAY, "")
        if ending.client is not None:
            code, reason = ending.client
            self.closed_with = code
            with contextlib.suppress(Exception):  # (the client may be gone meanwhile)
                await self.send({"type": "websocket.close", "code": code, "reason": reason})
        code, reason = ending.backend or (NORMAL, "")
        with contextlib.suppress(Exception):
            await self.upstream.close(code, reason)

    async def from_client(self) -> Ending:
        limits = self.limits
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code", NO_STATUS)
                self.closed_with = code
                return Ending(None, _passed_on(code, message.get("reason") or "", False))
            data: Data | None = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            size = _size(data)
            if size > limits.max_message_bytes:
                return _both(TOO_BIG, f"message over {limits.max_message_bytes} bytes")
            if self.rate is not None and not self.rate.allow(time.monotonic()):
                rate = limits.max_messages_per_second
                return _both(POLICY, f"more than {rate:g} messages per second")
            self.last_message = time.monotonic()
            self.messages_in += 1
            self.bytes_in += size
            await self.upstream.send(data)

    async def from_backend(self) -> Ending:
        while True:
            try:
                data = await self.upstream.recv()
            except SocketClosed as closed:
                if closed.too_big:
                    limit = self.limits.max_message_bytes
                    return _both(TOO_BIG, f"message from the backend over {limit} bytes")
                return Ending(_passed_on(closed.code, closed.reason, True), None)
            self.last_message = time.monotonic()
            self.messages_out += 1
            self.bytes_out += _size(data)
            key = "text" if isinstance(data, str) else "bytes"
            try:
                await self.send({"type": "websocket.send", key: data})
            except (OSError, RuntimeError):  # the client has gone, or its side is closing
                # (uvicorn: ClientDisconnected, or a RuntimeError for a send after its close)
                return Ending(None, (GOING_AWAY, "the client went away"))

    async def watch(self) -> Ending:
        """The idle timeout and the lifetime: one timer for both."""
        limits = self.limits
        opened = time.monotonic()
        end_of_life = None if limits.max_lifetime is None else opened + limits.max_lifetime
        while True:
            now = time.monotonic()
            if end_of_life is not None and now >= end_of_life:
                return _both(POLICY, f"connection lifetime of {limits.max_lifetime:g} s reached")
            idle_until = self.last_message + limits.idle_timeout
            if now >= idle_until:
                return _both(GOING_AWAY, f"idle for {limits.idle_timeout:g} s")
            wake = idle_until if end_of_life is None else min(idle_until, end_of_life)
            await asyncio.sleep(wake - now)


def _size(data: Data) -> int:
    return len(data.encode()) if isinstance(data, str) else len(data)


def _passed_on(code: int, reason: str, from_backend: bool) -> tuple[int, str]:
    """The close one side gets for the other's: the same code and reason, except the codes
    that never travel in a frame (1005: no code, 1006: no close frame at all)."""
    if code == NO_STATUS:
        return NORMAL, ""
    if code == ABNORMAL:
        if from_backend:
            return BACKEND_FAILED, "the backend connection was lost"
        return GOING_AWAY, "the client went away"
    if code not in SENDABLE and not 3000 <= code <= 4999:
        return NORMAL, ""
    return code, reason.encode()[:MAX_REASON].decode("utf-8", "ignore")
