"""A stand-in for the mail sender that the portal's e-mail hook calls."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from tollway.types import Receive, Scope, Send

from ..servers import read_body, serve_in_thread


class Mailbox:
    """Receives the hook's JSON posts (``purpose``, ``email``, ``verify_url``/``reset_url``)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.received.append(json.loads(await read_body(receive)))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.received) < count:
            assert time.monotonic() < deadline, "the hook was not called"
            await anyio.sleep(0.02)  # the hook is sent in the background
        return self.received


@contextmanager
def running_mailbox() -> Iterator[tuple[Mailbox, str]]:
    """A mailbox on loopback and the hook URL to configure."""
    box = Mailbox()
    with serve_in_thread(box) as base:
        yield box, f"{base}/send-verification"
