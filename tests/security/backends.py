"""Backends for the security tests: they record exactly what reached them, over a real socket.

``RecordingBackend`` parses what it receives with h11 (a strict HTTP/1.1 implementation, as a
careful backend would) and records every request it reads, so a test can count how many
requests one client call turned into and see their exact framing. A ``reply`` function decides
the raw bytes sent back, so a test can make the backend misbehave (two responses for one
request, a body on a 204, an unsolicited 408 on an idle connection).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import h11

from .rawhttp import connect


@dataclass
class Seen:
    """One request as the backend parsed it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int  # which backend connection it came on (1, 2, ...)

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


def json_reply(seen: Seen, number: int) -> bytes:
    """A well-framed 200 naming the request, so a client can tell whose answer it got."""
    body = json.dumps({"n": number, "target": seen.target}).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )


Reply = Callable[[Seen, int], bytes]


@dataclass
class RecordingBackend:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records requests and sends scripted bytes."""

    reply: Reply = json_reply
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    errors: list[str] = field(default_factory=list)  # what h11 refused (ambiguous framing, ...)
    sockets: list[socket.socket] = field(default_factory=list)
    url: str = ""

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            self.sockets.append(conn)
            threading.Thread(target=self.handle, args=(conn, self.connections), daemon=True).start()

    def handle(self, conn: socket.socket, number: int) -> None:
        parser = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        with conn:
            while True:
                try:
                    event = parser.next_event()
                except h11.RemoteProtocolError as exc:
                    self.errors.append(str(exc))
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    parser.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request, body = event, b""
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    seen = Seen(
                        request.method.decode(),
                        request.target.decode("latin-1"),
                        [(n.decode(), v.decode("latin-1")) for n, v in request.headers],
                        body,
                        number,
                    )
                    self.requests.append(seen)
                    try:
                        conn.sendall(self.reply(seen, len(self.requests)))
                    except OSError:
                        return
                    # Answered with raw bytes h11 did not see: start the next cycle by hand.
                    parser = _next_cycle(parser)
                elif isinstance(event, h11.ConnectionClosed):
                    return

    def push(self, data: bytes) -> None:
        """Write unsolicited bytes on every open backend connection (while they are idle)."""
        for conn in self.sockets:
            try:
                conn.sendall(data)
            except OSError:
                continue


def _next_cycle(parser: h11.Connection) -> h11.Connection:
    """A fresh parser that keeps the bytes already received after the last request."""
    trailing, _closed = parser.trailing_data
    fresh = h11.Connection(h11.SERVER)
    if trailing:  # (receive_data(b"") would mean the peer closed)
        fresh.receive_data(trailing)
    return fresh


@contextmanager
def recording_backend(reply: Reply = json_reply) -> Iterator[RecordingBackend]:
    backend = RecordingBackend(reply)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    backend.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    thread = threading.Thread(target=backend.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        listener.close()
        for conn in backend.sockets:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def exchange(base: str, raw: bytes, *, wait: float = 5.0) -> bytes:
    """Send raw bytes to the gateway and read until it closes or goes quiet for a moment."""
    with connect(base, timeout=wait) as conn:
        conn.sendall(raw)
        return read_all(conn)


def read_all(conn: socket.socket, quiet: float = 0.5) -> bytes:
    """Everything the peer sends until it closes, or sends nothing for ``quiet`` seconds."""
    received = b""
    conn.settimeout(quiet)
    while True:
        try:
            data = conn.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return received
        if not data:
            return received
        received += data


Handler = Callable[[socket.socket, int], None]


@contextmanager
def scripted_backend(handler: Handler) -> Iterator[str]:
    """A server on 127.0.0.1 whose every connection is handed to ``handler(conn, number)``
    in its own thread (for backends that stall, stream slowly or close at awkward moments)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    conns: list[socket.socket] = []

    def accept() -> None:
        number = 0
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            number += 1
            conns.append(conn)
            threading.Thread(target=_run, args=(conn, number), daemon=True).start()

    def _run(conn: socket.socket, number: int) -> None:
        with conn, suppress(OSError):
            handler(conn, number)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def read_request(conn: socket.socket) -> bytes:
    """One request head and its body (Content-Length or chunked) from ``conn``; b"" when it
    closed. The body is returned de-chunked, after the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if fields.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += conn.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += conn.recv(65536)
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return head + b"\r\n\r\n" + body
    length = int(fields.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest
