"""A stand-in for the seed's secured Azure Function: the names API behind an x-functions-key.

Like a function with ``authLevel: 'function'``, it answers 401 to any call that does not carry
the right ``x-functions-key`` header, so only the gateway (which injects the key) gets through.
"""

from __future__ import annotations

import hmac
import json

from tollway.samples.names import app as names_app
from tollway.types import ASGIApp, Receive, Scope, Send


def secured_backend(function_key: str) -> ASGIApp:
    """The names API, refusing calls without ``x-functions-key: <function_key>``."""
    expected = function_key.encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await names_app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-functions-key", b"")
        if hmac.compare_digest(sent, expected):
            await names_app(scope, receive, send)
            return
        body = json.dumps({"error": "missing or wrong x-functions-key"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
