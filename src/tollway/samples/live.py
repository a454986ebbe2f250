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
- ``WS /ws/ticker?interval=S``: a JSON tick every S seconds until the client closes;
- ``GET /``: a page that shows the ticker live, over WebSocket and as events, in a browser
  (open it as ``/live/?subscription-key=<key>`` through the gateway: its script reads the key
  from the address bar, as browsers cannot set headers on a WebSocket or an EventSource).

Run alone with ``uvicorn tollway.samples.live:app``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from html import escape
from typing import Annotated

from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, StreamingResponse

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


app = FastAPI(
    title="Live",
    version="1.0",
    description="A ticker as Server-Sent Events and over WebSocket (WS /ws/ticker), and a "
    "WebSocket echo (WS /ws/echo).",
)

Count = Annotated[int, Query(ge=1, le=MAX_COUNT, description="How many ticks.")]
Interval = Annotated[
    float, Query(ge=MIN_INTERVAL, le=3600, description="Seconds between two ticks.")
]


async def _ticks(count: int, interval: float, line: str) -> AsyncIterator[str]:
    for n in range(1, count + 1):
        if n > 1:
            await asyncio.sleep(interval)
        yield line.format(n=n, tick=_tick(n))


@app.get("/events", response_class=StreamingResponse)
async def events(count: Count = 10, interval: Interval = 1.0) -> StreamingResponse:
    """``count`` ticks as Server-Sent Events (``text/event-stream``), one every ``interval`` s."""
    stream = _ticks(count, interval, "id: {n}\nevent: tick\ndata: {tick}\n\n")
    headers = {"cache-control": "no-cache"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@app.get("/chunks", response_class=StreamingResponse)
async def chunks(count: Count = 10, interval: Interval = 1.0) -> StreamingResponse:
    """The same ticks as a chunked ``text/plain`` response, one line each."""
    return StreamingResponse(_ticks(count, interval, "{tick}\n"), media_type="text/plain")


@app.websocket("/ws/echo")
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


@app.websocket("/ws/ticker")
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


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Live</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:48em}}
ol{{font-family:monospace;height:12em;overflow:auto;border:1px solid #ccc}}</style></head>
<body data-prefix="{prefix}">
<h1>Live</h1>
<p>The same ticker, through the gateway, once over a WebSocket and once as Server-Sent Events.
Open this page as <code>{prefix}/?subscription-key=&lt;your key&gt;</code>.</p>
<h2>WebSocket <small id="ws-state">connecting</small></h2><ol id="ws"></ol>
<h2>Server-Sent Events <small id="sse-state">connecting</small></h2><ol id="sse"></ol>
<script>{script}</script>
</body></html>
"""

# Inline: a request for a separate script file would need the key too, and the page cannot
# give it one (the gateway removed it from the page's own request before it got here).
SCRIPT = """
const prefix = document.body.dataset.prefix;
const key = new URLSearchParams(location.search).get("subscription-key") || "";
const query = "subscription-key=" + encodeURIComponent(key);
function show(list, text) {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById(list).append(item);
}
function state(list, text) { document.getElementById(list + "-state").textContent = text; }
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(scheme + "//" + location.host + prefix + "/ws/ticker?" + query);
socket.onopen = () => state("ws", "open");
socket.onmessage = (event) => show("ws", event.data);
socket.onclose = (event) => state("ws", "closed " + event.code + " " + event.reason);
const events = new EventSource(prefix + "/events?count=1000&" + query);
events.onopen = () => state("sse", "open");
events.addEventListener("tick", (event) => show("sse", event.data));
events.onerror = () => state("sse", "reconnecting");
"""


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    """The live page; the gateway says under which prefix it serves the API."""
    prefix = request.headers.get("x-forwarded-prefix", "").rstrip("/")
    return HTMLResponse(PAGE.format(prefix=escape(prefix), script=SCRIPT))
