"""Tollway's access log: one line per request on every path, logger ``tollway.access``.

Written by Tollway for API calls on both transports and for its own pages (``/docs``, ``/-/``,
``/portal``), never by uvicorn: uvicorn's line carries the query string, where subscription keys
(``?subscription-key=``) and portal tokens (``/portal/reset?token=``) travel (issue 9, item 6).
A line names the client (through trusted proxies), the method, the path without its query string
(for API calls only the API's prefix), the status and the latency; API calls add the
subscription's id (never its key)::

    203.0.113.7 "GET /names" 200 1.2ms sub=3
    203.0.113.7 "POST /portal/signin" 303 25.0ms

A WebSocket session is one API call with status 101 (its latency: how long it lasted), followed
by a line with its close code and the messages each way::

    203.0.113.7 "GET /live" 101 5234.0ms sub=3
    203.0.113.7 "WEBSOCKET /live" closed 1000 messages in=4 out=120 sub=3
"""

from __future__ import annotations

import logging
import time

from tollway.proxies import ProxyTrust
from tollway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.access")

_PRINTABLE = frozenset(range(0x21, 0x7F)) - {ord('"'), ord("%")}


def printable(raw: bytes) -> str:
    """``raw`` with anything but visible ASCII percent-encoded, so a line cannot be forged."""
    return "".join(chr(b) if b in _PRINTABLE else f"%{b:02X}" for b in raw)


def client_of(scope: Scope, trust: ProxyTrust) -> str:
    """The client's address, through trusted proxies (as API calls resolve it)."""
    peer = scope["client"][0] if scope.get("client") else ""
    forwarded = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded = value  # (the last one, as forwarding.prepare_request takes it)
    return trust.client_address(peer, forwarded)


def api_call(
    client: str, method: str, prefix: str, status: int, latency_ms: float, subscription_id: int
) -> None:
    """The line for one API call (called from ``Gateway.record_exchange`` only)."""
    logger.info(
        '%s "%s %s" %d %.1fms sub=%d',
        client or "-",
        printable(method.encode("latin-1")),
        prefix,
        status,
        latency_ms,
        subscription_id,
    )


def websocket_session(
    client: str, prefix: str, code: int, messages_in: int, messages_out: int, subscription_id: int
) -> None:
    """The line after a WebSocket session's call line: how it closed, its messages each way."""
    logger.info(
        '%s "WEBSOCKET %s" closed %d messages in=%d out=%d sub=%d',
        client or "-",
        prefix,
        code,
        messages_in,
        messages_out,
        subscription_id,
    )


def page(client: str, method: str, path: bytes, status: int, latency_ms: float) -> None:
    """The line for one request to Tollway's own pages or answers outside any API."""
    logger.info(
        '%s "%s %s" %d %.1fms',
        client or "-",
        printable(method.encode("latin-1")),
        printable(path),
        status,
        latency_ms,
    )


async def serve_logged(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, client: str, path: bytes
) -> None:
    """Run ``app`` and log its answer's status (500 if it failed before answering)."""
    started = time.perf_counter()
    status = 0

    async def watched(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, watched)
    finally:
        latency_ms = (time.perf_counter() - started) * 1000
        page(client, scope["method"], path, status or 500, latency_ms)
