"""Run the gateway under uvicorn (what ``tollway serve`` and ``tollway demo`` call)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tollway.errors import UserError
from tollway.gateway.recording import accesslog
from tollway.gateway.recording.metrics import MULTIPROC_ENV
from tollway.gateway.transport.http_limits import open_file_limit
from tollway.gateway.transport.uvicorn_hooks import check_protocol_hooks
from tollway.policies.websocket import MAX_MESSAGE_CEILING
from tollway.portal.app import check_portal_settings
from tollway.portal.settings import PortalSettings
from tollway.settings import Settings
from tollway.site.compose import create_gateway

logger = logging.getLogger("tollway")

PROTOCOL = "tollway.gateway.transport.fastpath:GatewayProtocol"
WS_PROTOCOL = "tollway.gateway.transport.websocket:GatewayWebSocketProtocol"
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


def configure_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def check_port_free(host: str, port: int) -> None:
    """Fail with one clear line (not a traceback) when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use (stop the other server or "
                    "pass --port)"
                ) from None
            raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def check_workers_share_state(settings: Settings, workers: int) -> None:
    """Memory counters are per process: N workers would each allow the full rate limit."""
    if workers > 1 and settings.redis_url.startswith("memory:"):
        if not settings.allow_memory_with_workers:
            raise UserError(
                f"--workers {workers} needs shared counters: set TOLLWAY_REDIS_URL=redis://... "
                "(or TOLLWAY_ALLOW_MEMORY_WITH_WORKERS=true to accept per-process limits)"
            )
        logger.warning(
            "%d workers with memory:// counters: every rate limit and quota is per process", workers
        )


@contextmanager
def shared_metrics_dir() -> Iterator[None]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers, removed when they have stopped.

    Each worker (a new interpreter: uvicorn spawns them) writes its metrics there, and
    ``/-/metrics`` adds up every worker's (prometheus-client's multiprocess mode). A directory
    the operator set already is used as it is (empty it between runs).
    """
    if os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="tollway-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once its socket accepts connections.

    What ``tollway demo`` prints (a key and a curl line to paste) must not appear before the
    server listens, or a quick paste is refused (issue 14).
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready()


def serve(
    settings: Settings,
    *,
    workers: int = 1,
    log_level: str = "info",
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the gateway until interrupted (SIGINT/SIGTERM finish in-flight requests).

    ``on_ready`` (one worker only) is called once the socket accepts connections.
    """
    check_workers_share_state(settings, workers)
    if settings.access_log == "json":
        accesslog.json_lines_to_stdout()  # (workers: tollway.asgi does the same)
    check_portal_settings(settings, PortalSettings())
    check_port_free(settings.host, settings.port)
    check_protocol_hooks(settings.fast_path)
    open_file_limit()  # raised to the hard limit now, so that workers inherit it
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",
        "access_log": False,  # Tollway writes its own (tollway.access), without query strings
        "server_header": False,
        "proxy_headers": False,  # Tollway applies its own trusted-proxy rules
        "log_level": log_level,
        "log_config": None,
        "timeout_graceful_shutdown": 30,
        # Always Tollway's protocol: its limits on request heads, client timeouts and the
        # connection cap apply to every request. API calls to HTTP backends take its callback
        # fast path unless TOLLWAY_FAST_PATH=false; everything else takes the ASGI path.
        "http": PROTOCOL,
        # WebSockets (always the ASGI transport): counted against the same connection cap,
        # closed with 1001 on shutdown; no message larger than any API's limit is read.
        "ws": WS_PROTOCOL,
        "ws_max_size": MAX_MESSAGE_CEILING,
    }
    if workers > 1:
        # Each worker process builds its own gateway from the same TOLLWAY_* settings.
        # A busy machine can take more than uvicorn's default 5 s to start a worker.
        with shared_metrics_dir():  # /-/metrics adds up all workers
            uvicorn.run(
                "tollway.asgi:create_app",
                factory=True,
                workers=workers,
                timeout_worker_healthcheck=30,
                **common,
            )
    else:
        server = AnnouncingServer(
            uvicorn.Config(create_gateway(settings), **common), on_ready or (lambda: None)
        )
        server.run()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
