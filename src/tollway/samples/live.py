"""A live API: a WebSocket echo and ticker, and the same ticker as Server-Sent Events.

What a WebSocket or streaming API behind Tollway looks like (docs/gateway.md, "WebSockets and
streaming"); the tests use it as an in-process (``app:``) and as an HTTP (``url:``) backend.

- ``GET /events?count=N&interval=S``: N ticks as Server-Sent Events, one every S seconds;
- ``GET /chunks?count=N&interval=S``: the same ticks as a chunked ``text/plain`` response, one
  line each;
- ``WS /ws/echo``: sends back every text and binary message; the text ``close <code> <reason>``
  closes with that code and reason, ``big <n>`` answers with n bytes, ``request`` with what
  the backend received (path, query, headers) as JSON; the first subprotocol offered is accepted;
  how each session ended (the client's close code and reason) is kept in ``CLOSES``;
- ``WS /ws/ticker?interval=S``: a JSON tick every S seconds until the client closes.

Run alone with ``uvicorn tollway.samples.live:app``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_COUNT = 10_000
MIN_INTERVAL = 0.01
CLOSES: list[tuple[int, str]] = []  # how /ws/echo sessions were closed by the other side


def _number(text: str | None, default: float, low: float, high: float) -> float:
    try:
        value = float(text) if text is not None else default
    except ValueError:
        value = default
    return min(high, max(low, value))


def _tick(n: int) -> str:
    return json.dumps({"tick": n, "time": round(time.time(), 3)})


def _pace(request: Request) -> tuple[int, float]:
    count = int(_number(request.query_params.get("count"), 10, 1, MAX_COUNT))
    return count, _number(request.query_params.get("interval"), 1.0, MIN_INTERVAL, 3600)


async def events(request: Request) -> StreamingResponse:
    count, interval = _pace(request)

    async def stream() -> AsyncIterator[str]:
        for n in range(1, count + 1):
            if n > 1:
                await asyncio.sleep(interval)
            yield f"id: {n}\nevent: tick\ndata: {_tick(n)}\n\n"

    headers = {"cache-control": "no-cache"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def chunks(request: Request) -> StreamingResponse:
    count, interval = _pace(request)

    async def stream() -> AsyncIterator[str]:
        for n in range(1, count + 1):
            if n > 1:
                await asyncio.sleep(interval)
            yield _tick(n) + "\n"

    return StreamingResponse(stream(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                CLOSES.append((message.get("code", 1000), message.get("reason") or ""))
                return
            text = message.get("text")
            if text is None:
                await websocket.send_bytes(message.get("bytes") or b"")
            elif text.startswith("close "):
                _, code, *reason = text.split(" ", 2)
                await websocket.close(int(code), reason[0] if reason else "")
                return
            elif text.startswith("big "):
                await websocket.send_bytes(b"x" * int(text[4:]))
            elif text == "request":
                await websocket.send_text(json.dumps(_request_of(websocket)))
            else:
                await websocket.send_text(text)
    except WebSocketDisconnect:
        return


def _request_of(websocket: WebSocket) -> dict[str, object]:
    scope = websocket.scope
    return {
        "path": scope["path"],
        "query": scope.get("query_string", b"").decode("latin-1"),
        "headers": {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
    }


async def ticker(websocket: WebSocket) -> None:
    interval = _number(websocket.query_params.get("interval"), 1.0, MIN_INTERVAL, 3600)
    await websocket.accept()

    async def tick() -> None:
        n = 0
        while True:
            n += 1
            await websocket.send_text(_tick(n))
            await asyncio.sleep(interval)

    ticking = asyncio.create_task(tick())
    try:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass  # (messages from the client are ignored; reading notices its close)
    finally:
        ticking.cancel()


app = Starlette(
    routes=[
        Route("/events", events),
        Route("/chunks", chunks),
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/ticker", ticker),
    ]
)
