"""ASGI entry point for process managers: ``uvicorn --factory tollway.asgi:create_app``.

Settings come from ``TOLLWAY_*`` environment variables. Run ``tollway migrate`` first.
"""

from __future__ import annotations

from tollway.gateway.app import Gateway, create_gateway
from tollway.settings import Settings


def create_app() -> Gateway:
    return create_gateway(Settings())
