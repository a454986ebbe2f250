"""``X-Process-Time``: seconds the app spent on a request, added to every HTTP response."""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ProcessTimeMiddleware:
    """Pure ASGI middleware timing each request until its response headers are sent.

    ``clock`` returns seconds (``time.perf_counter``; tests pass one they control).
    """

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = self.clock()

        async def send_with_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Process-Time"] = f"{self.clock() - start:.6f}"
            await send(message)

        await self.app(scope, receive, send_with_time)
