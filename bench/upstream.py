"""The bench upstream: a minimal raw ASGI app answering 200 and a small JSON body to any path.

Run by bench/run.py as ``uvicorn upstream:create_app --factory --app-dir bench --no-access-log
--loop uvloop --http httptools``. Kept as cheap as an ASGI app can be, so that proxy overhead
dominates. Two paths of its own, under ``/-/bench/``, are not counted as requests:

- ``/-/bench/jwks.json``: the bench issuer's keys (``BENCH_JWKS``, JSON), which the
  ``tollway-jwt`` target's ``validate-jwt`` policy fetches;
- ``/-/bench/requests``: how many requests it has answered and JWKS fetches it has served, so
  the bench can tell that a cache target's hits never reached it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JWKS_PATH = "/-/bench/jwks.json"
COUNT_PATH = "/-/bench/requests"
OWN_PREFIX = "/-/bench/"
BODY = b'{"ok":true,"from":"bench-upstream"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
RESPONSE_BODY = {"type": "http.response.body", "body": BODY}


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge start-up and shut-down; there is nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def send_json(send: Send, status: int, body: bytes) -> None:
    """One complete JSON response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BenchUpstream:
    """Answers every HTTP request with 200 and ``BODY``, counting them; serves the JWKS."""

    def __init__(self, jwks: bytes | None) -> None:
        self.jwks = jwks
        self.requests = 0
        self.jwks_fetches = 0

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith(OWN_PREFIX):
                await self.answer_own(scope["path"], send)
                return
            self.requests += 1
            await send(START)
            await send(RESPONSE_BODY)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    async def answer_own(self, path: str, send: Send) -> None:
        """The bench's own paths: the JWKS and the request counts."""
        if path == JWKS_PATH and self.jwks is not None:
            self.jwks_fetches += 1
            await send_json(send, 200, self.jwks)
        elif path == COUNT_PATH:
            counts = {"requests": self.requests, "jwks_fetches": self.jwks_fetches}
            await send_json(send, 200, json.dumps(counts).encode())
        else:
            await send_json(send, 404, b'{"error":"no such bench path"}')


def create_app() -> BenchUpstream:
    """The upstream, with the JWKS from ``BENCH_JWKS`` if the bench passed one."""
    jwks = os.environ.get("BENCH_JWKS")
    return BenchUpstream(jwks.encode() if jwks else None)
