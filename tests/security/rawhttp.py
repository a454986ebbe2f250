"""Raw HTTP/1 over sockets for the security tests: send exact bytes, read the answer.

Also a gateway in front of a real HTTP backend (the echo sample), with an open API at ``/open``,
so requests take the fast path on the ``fast`` transport.
"""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from tests.proofs.conftest import apply, make_gateway
from tests.servers import serve_gateway


@dataclass
class Answer:
    """One response as read off the socket."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    closed: bool  # the gateway closed the connection after answering

    def problem(self) -> dict[str, Any]:
        assert self.headers["content-type"] == "application/problem+json", self
        problem: dict[str, Any] = json.loads(self.body)
        assert problem["status"] == self.status
        assert "Traceback" not in problem["detail"]
        return problem


def open_config(upstream: str) -> dict[str, Any]:
    return {
        "backends": {"echo": {"url": upstream}},
        "apis": {"open": {"path": "/open", "backend": "echo", "subscription_required": False}},
    }


@contextmanager
def open_gateway(
    engine: Engine, database_url: str, upstream: str, transport: str, **settings: Any
) -> Iterator[str]:
    """A gateway with the open API, served on ``transport``; yields its base URL."""
    apply(engine, open_config(upstream))
    gateway = make_gateway(engine, database_url, **settings)
    with serve_gateway(gateway, transport) as base:
        yield base


def connect(base: str, timeout: float = 10) -> socket.socket:
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname or "", parts.port or 80), timeout=timeout)


def exchange(base: str, data: bytes) -> Answer:
    """Send ``data`` on a new connection and read the one answer."""
    with connect(base) as sock:
        sock.sendall(data)
        return read_answer(sock)


def read_answer(sock: socket.socket, *, then_closed: bool = True) -> Answer:
    """The response on ``sock`` (Content-Length framed, as every gateway refusal is);
    ``then_closed``: also find out whether the gateway closed the connection after it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without an answer (got {buffer!r})"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    closed = is_closed(sock) if then_closed else False
    return Answer(int(status_line.split()[1]), headers, body[:length], closed)


def is_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed (or half-closed) the connection: nothing more will come."""
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def stream_until_answered(base: str, start: bytes, filler: bytes, limit: int) -> tuple[int, Answer]:
    """Send ``start`` then ``filler`` again and again (up to ``limit`` bytes) until the gateway
    answers; return how much was sent by then, and the answer."""
    with connect(base) as sock:
        sock.sendall(start)
        sent = len(start)
        while sent < limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(filler)
        return sent, read_answer(sock)
