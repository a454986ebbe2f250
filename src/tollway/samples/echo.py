"""An echo backend: shows exactly what the gateway forwarded (like httpbin's /anything).

Raw ASGI, no dependencies. Paths:
- ``/stream?size=N&chunk=M``: N bytes of ``x`` sent in M-byte chunks (for streaming tests);
- ``/slow?seconds=S``: answers after S seconds (for timeout tests);
- ``/status/<code>``: answers with that status;
- ``/upload``: reads the body in chunks, reports its size and SHA-256 (never holds it whole);
- ``/with-headers?Name=value``: the usual description, sent with those response headers;
- anything else: a JSON description of the request (method, path, query, headers, body size).

Run alone with ``uvicorn tollway.samples.echo:app``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import parse_qs

from tollway.types import Receive, Scope, Send

SERVED = [0]  # requests answered by this process (tests tell cache hits from misses)


async def _json(
    send: Send, status: int, payload: object, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[int, str]:
    size = 0
    digest = hashlib.sha256()
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        digest.update(chunk)
        if not message.get("more_body", False):
            return size, digest.hexdigest()


def _number(query: dict[str, list[str]], name: str, default: float) -> float:
    try:
        return float(query.get(name, [default])[0])
    except ValueError:
        return default


async def _stream(send: Send, size: int, chunk: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    block = b"x" * chunk
    sent = 0
    while sent < size:
        part = block[: min(chunk, size - sent)]
        sent += len(part)
        await send({"type": "http.response.body", "body": part, "more_body": sent < size})
    if size == 0:
        await send({"type": "http.response.body", "body": b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if path == "/stream":
        size = int(_number(query, "size", 1024))
        await _stream(send, max(size, 0), max(int(_number(query, "chunk", 65536)), 1))
        return
    if path == "/slow":
        await asyncio.sleep(_number(query, "seconds", 1.0))
    if path.startswith("/status/") and path[8:].isdigit():
        status = int(path[8:])
        await _json(send, status if 200 <= status < 600 else 400, {"status": status})
        return
    size, sha256 = await _read_body(receive)
    SERVED[0] += 1
    extra = []
    if path == "/with-headers":
        extra = [(name.lower().encode(), values[0].encode()) for name, values in query.items()]
    await _json(
        send,
        200,
        {
            "served": SERVED[0],
            "method": scope["method"],
            "path": path,
            "raw_path": (scope.get("raw_path") or path.encode()).decode("latin-1"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "root_path": scope.get("root_path", ""),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
            "client": list(scope["client"]) if scope.get("client") else None,
            "body_size": size,
            "body_sha256": sha256,
        },
        extra,
    )
