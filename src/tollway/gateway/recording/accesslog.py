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

With ``TOLLWAY_ACCESS_LOG=json`` each line is instead one JSON object, written alone on
standard output (no logging prefix, so a collector can parse every line): the fields are
:func:`api_call_json`'s and :func:`page`'s, listed in docs/observability.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from tollway.gateway.calltrace import CallTrace
from tollway.proxies import ProxyTrust
from tollway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.access")

_PRINTABLE = frozenset(range(0x21, 0x7F)) - {ord('"'), ord("%")}


def json_lines_to_stdout() -> None:
    """``TOLLWAY_ACCESS_LOG=json`` in a server process: the access log's lines go alone (no
    logging prefix) to standard output, so that every line is one JSON object. Called by the
    entry points that configure logging (``tollway serve``, ``tollway.asgi``), once."""
    if any(getattr(h, "tollway_json", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.tollway_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


_encode = json.JSONEncoder(separators=(",", ":")).encode  # (made once: json.dumps makes one
# per call when given options)
_second = [-1, ""]  # the last second formatted, and its text (formatted once per second)


def now_iso() -> str:
    """Now, UTC, ISO 8601 with milliseconds: ``2026-12-02T11:32:47.123Z``."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def api_call_json(fields: dict[str, object]) -> None:
    """The JSON line for one API call (``observe.Observer.call`` builds the fields)."""
    logger.info("%s", _encode(fields))


_PRINTABLE_BYTES = bytes(sorted(_PRINTABLE))


def printable(raw: bytes) -> str:
    """``raw`` with anything but visible ASCII percent-encoded, so a line cannot be forged."""
    if not raw.translate(None, _PRINTABLE_BYTES):  # (the usual case: nothing to encode)
        return raw.decode("ascii")
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


def page(
    client: str,
    method: str,
    path: bytes,
    status: int,
    latency_ms: float,
    trace: CallTrace | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    as_json: bool = False,
) -> None:
    """The line for one request to Tollway's own pages or answers outside any API."""
    if as_json:
        fields = {
            "time": now_iso(),
            "request_id": trace.ensure(headers or []).decode() if trace else None,
            "client": client or None,
            "method": printable(method.encode("latin-1")),
            "path": printable(path),
            "status": status,
            "duration_ms": round(latency_ms, 3),
        }
        logger.info("%s", _encode(fields))
        return
    logger.info(
        '%s "%s %s" %d %.1fms',
        client or "-",
        printable(method.encode("latin-1")),
        printable(path),
        status,
        latency_ms,
    )


async def serve_logged(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    client: str,
    path: bytes,
    trace: CallTrace | None = None,
    as_json: bool = False,
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
        latency = latency_ms
        page(
            client, scope["method"], path, status or 500, latency, trace, scope["headers"], as_json
        )
