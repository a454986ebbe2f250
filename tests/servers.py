"""Real servers on 127.0.0.1 for socket-level tests, stopped by the test that started them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tollway.types import ASGIApp, Receive

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: ASGIApp,
    *,
    lifespan: str = "auto",
    http: Any = "auto",
    ws: Any = "auto",
    port: int = 0,
    **options: Any,
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yield its base URL.

    ``http`` is uvicorn's HTTP protocol: "auto", or a class such as Tollway's GatewayProtocol;
    ``ws`` its WebSocket protocol (Tollway's for a gateway). ``port`` 0 takes a free one;
    ``options`` go to ``uvicorn.Config`` (``ssl_certfile``, ...).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        **options,
        http=http,
        ws=ws,
        proxy_headers=False,  # as `tollway serve`: Tollway applies its own trusted-proxy rules
        lifespan=lifespan,  # type: ignore[arg-type]
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if options.get("ssl_certfile") else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


TRANSPORTS = ("asgi", "fast")


@contextmanager
def serve_gateway(gateway: ASGIApp, transport: str) -> Iterator[str]:
    """Serve a gateway over real sockets on one of its two transports; yield its base URL.

    ``fast``: Tollway's callback fast path (``tollway serve``'s default); ``asgi``: the same
    gateway with every request on the ASGI path (``TOLLWAY_FAST_PATH=false``). Both run
    Tollway's protocol, as ``tollway serve`` does. Security and behaviour tests run on both
    (the ``transport`` fixture).
    """
    from tollway.gateway.transport.fastpath import GatewayProtocol
    from tollway.gateway.transport.websocket import GatewayWebSocketProtocol

    class AsgiRoutedProtocol(GatewayProtocol):
        fast_routing = False  # as TOLLWAY_FAST_PATH=false

    http: Any = GatewayProtocol if transport == "fast" else AsgiRoutedProtocol
    # (WebSockets always take the ASGI transport, through Tollway's WebSocket protocol)
    with serve_in_thread(gateway, lifespan="on", http=http, ws=GatewayWebSocketProtocol) as base:
        yield base


def tollway_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLWAY_")}
    env.update(
        TOLLWAY_DATABASE_URL=database_url,
        TOLLWAY_SECRET_KEY="test-secret-key-0123456789",
        **extra,
    )
    return env


def run_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``tollway`` command (``stdin``: text fed to its standard input)."""
    return subprocess.run(
        [str(VENV_BIN / "tollway"), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class TollwayProcess:
    """A running ``tollway`` server process; ``output`` is filled in once it has stopped."""

    base: str
    process: subprocess.Popen[str]
    output: str = ""

    def read_until(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Read what it prints, line by line, until a line matches ``pattern``; the match.

        The lines read are kept at the front of ``output``."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            seen += line
            self.output += line
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matched {pattern!r}; it printed:\n{seen}")


@contextmanager
def tollway_process(
    command: str,
    env: Mapping[str, str],
    *args: str,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    wait: bool = True,
) -> Iterator[TollwayProcess]:
    """Start ``tollway <command> --port N`` (serve or demo), wait until it is ready, stop it
    after (SIGTERM, then SIGKILL if it hangs) and keep what it printed. ``preexec_fn`` runs in
    the child before ``tollway`` starts (e.g. to lower its resource limits). With
    ``wait=False`` it yields at once: the test reads the output as it comes (``read_until``)."""
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "tollway"), command, "--port", str(port), *args],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    running = TollwayProcess(f"http://127.0.0.1:{port}", process)
    try:
        if wait:
            wait_ready(running.base, process)
        yield running
    finally:
        process.terminate()
        try:
            running.output += process.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            running.output += process.communicate()[0]


@contextmanager
def tollway_serve(env: Mapping[str, str], *args: str) -> Iterator[str]:
    """Start ``tollway serve`` as a separate process; yield its base URL; stop it after."""
    with tollway_process("serve", env, *args) as running:
        yield running.base


async def read_body(receive: Receive) -> bytes:
    """The whole request body of an ASGI request (for small recording test servers)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def wait_ready(base: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise RuntimeError(f"tollway serve exited early:\n{output}")
        try:
            if httpx.get(f"{base}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("tollway serve did not become ready")
