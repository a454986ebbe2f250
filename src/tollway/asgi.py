"""ASGI entry point for process managers: ``uvicorn --factory tollway.asgi:create_app``.

Settings come from ``TOLLWAY_*`` environment variables. Run ``tollway migrate`` first. Pass
``--http tollway.gateway.fastpath:GatewayProtocol`` (gunicorn:
``-k tollway.gunicorn_worker.Worker``) for Tollway's request limits and timeouts
(docs/security.md) and its fast path.
"""

from __future__ import annotations

from tollway.gateway.app import Gateway, create_gateway
from tollway.settings import Settings


def create_app() -> Gateway:
    return create_gateway(Settings())
