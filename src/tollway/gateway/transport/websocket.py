"""uvicorn's WebSocket protocol, as the gateway runs it after an upgrade.

``GuardedProtocol.handle_websocket_upgrade`` hands an upgraded connection to this protocol (the
``ws`` protocol ``tollway serve`` configures), which calls the gateway with an ASGI ``websocket``
scope (``gateway/exchange/websocket.py``). On top of uvicorn's ``WebSocketsSansIOProtocol``
(framing by the ``websockets`` library) it:

- keeps counting the connection against the process's connection cap
  (``transport/connections.py``) for as long as it is open: it is never evicted, so at the cap
  a new connection is refused once every connection is a busy one;
- closes open sessions with ``1001`` (going away) on a graceful shutdown, where uvicorn sends
  ``1012`` (service restart); the gateway passes the close on to the backend;
- leaves the access line to Tollway: uvicorn's own line for an upgrade carries the query string,
  where the subscription key may travel (``?subscription-key=``).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from tollway.gateway.transport.connections import ConnectionBook

GOING_AWAY = 1001
SHUTDOWN_REASON = "server shutting down"

# uvicorn logs each upgrade's path *with* its query string at INFO on its protocol's logger;
# this protocol logs on its own, which lets warnings and errors (failures) through only.
quiet_logger = logging.getLogger("tollway.gateway.websocket")
quiet_logger.setLevel(logging.WARNING)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, counted against the cap, closing with 1001 at shutdown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = quiet_logger
        self.book: ConnectionBook | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.book = ConnectionBook.of(self.loop)
        self.book.hold(self)  # (in place of the HTTP connection it was upgraded from)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.book is not None:
            self.book.forget(self)
        super().connection_lost(exc)

    def evict(self) -> None:
        """Never called: a held connection is never idle."""

    def check_deadlines(self, now: float) -> None:
        """Nothing to check: the session's own limits are the gateway's (idle, lifetime)."""

    def shutdown(self) -> None:
        if not self.handshake_complete or self.close_sent or self.transport.is_closing():
            super().shutdown()
            return
        self.stop_keepalive()
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": GOING_AWAY, "reason": SHUTDOWN_REASON}
        )
        self.conn.send_close(GOING_AWAY, SHUTDOWN_REASON)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
