"""ASGI entry point for process managers:
``uvicorn --factory tollway.asgi:create_app --no-proxy-headers``.

Settings come from ``TOLLWAY_*`` environment variables. Run ``tollway migrate`` first. Pass
``--http tollway.gateway.transport.fastpath:GatewayProtocol`` (gunicorn:
``-k tollway.gunicorn_worker.Worker``) for Tollway's request limits and timeouts
(docs/security.md) and its fast path. The
gateway undoes uvicorn's proxy-header rewriting and access log even when the flags are
forgotten (``tollway.gateway.exchange.hosting``): only ``TOLLWAY_TRUSTED_PROXIES`` are believed, and
``TOLLWAY_ACCESS_LOG`` is the one access log.
"""

from __future__ import annotations

from tollway.gateway.exchange.gateway import Gateway
from tollway.gateway.recording import accesslog
from tollway.gateway.transport.uvicorn_hooks import check_protocol_hooks
from tollway.server import configure_logging
from tollway.settings import Settings
from tollway.site.compose import create_gateway


def create_app() -> Gateway:
    """The gateway; logs go to stderr unless the process manager configured logging."""
    configure_logging()
    settings = Settings()
    if settings.access_log == "json":
        accesslog.json_lines_to_stdout()
    check_protocol_hooks(settings.fast_path)
    return create_gateway(settings)
