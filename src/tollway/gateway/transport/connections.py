"""The open client connections of one event loop: a cap, eviction, and one deadline sweep.

At the cap, a new connection closes the oldest connection that is still waiting for a request
head (a new connection that has not sent one yet, or an idle keep-alive connection), as nginx
reuses its "reusable" connections; only when every connection is busy is the new one refused
(503). So slow or idle clients cannot lock others out, whatever their number. An upgraded
WebSocket stays counted (busy, never evicted) until it closes. Deadlines (head and body
timeouts) are checked by one periodic sweep, not a timer per connection.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol


class Connection(Protocol):
    """What the book needs from a client connection (``GuardedProtocol``)."""

    def evict(self) -> None: ...

    def check_deadlines(self, now: float) -> None: ...


class ConnectionBook:
    """Open connections, oldest-first idle ones, and the deadline sweep of one loop."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ConnectionBook] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.open: set[Connection] = set()
        self.idle: dict[Connection, None] = {}  # waiting for a request head, oldest first
        self.tick = 1.0
        self.handle: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> ConnectionBook:
        book = cls._by_loop.get(loop)
        if book is None:
            book = cls._by_loop[loop] = cls(loop)
        return book

    def admit(self, connection: Connection, cap: int, tick: float) -> bool:
        """Count a new connection in, evicting the oldest idle one at the cap; False when
        every connection is busy (the caller refuses the new one)."""
        if len(self.open) >= cap:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            oldest.evict()
        self.open.add(connection)
        self.idle[connection] = None
        self.tick = min(self.tick, tick)
        if self.handle is None:
            self.handle = self.loop.call_later(self.tick, self.sweep)
        return True

    def hold(self, connection: Connection) -> None:
        """Count in a connection that is never evicted: an upgraded WebSocket, in place of the
        HTTP connection it was upgraded from (so no cap check: the count does not change)."""
        self.open.add(connection)
        self.idle.pop(connection, None)

    def waiting(self, connection: Connection) -> None:
        """The connection waits for its next request head: evictable, as the youngest."""
        if connection in self.open:
            self.idle.pop(connection, None)
            self.idle[connection] = None

    def busy(self, connection: Connection) -> None:
        """The connection has a request in hand: never evicted."""
        self.idle.pop(connection, None)

    def forget(self, connection: Connection) -> None:
        self.open.discard(connection)
        self.idle.pop(connection, None)

    def sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        for connection in list(self.open):
            connection.check_deadlines(now)
        if self.open:
            self.handle = self.loop.call_later(self.tick, self.sweep)
