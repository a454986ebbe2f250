"""A gunicorn worker with Tollway's HTTP protocol: ``-k tollway.gunicorn_worker.Worker``.

uvicorn's own gunicorn worker runs uvicorn's plain protocol, without Tollway's limits on request
heads, client timeouts and connections (docs/security.md) and without the fast path. This one
runs ``GatewayProtocol``, and leaves ``X-Forwarded-*`` to Tollway's trusted-proxy rules
(``TOLLWAY_TRUSTED_PROXIES``) as ``tollway serve`` does.
"""

from __future__ import annotations

import warnings
from typing import Any

from tollway.policies.websocket import MAX_MESSAGE_CEILING
from tollway.server import PROTOCOL, WS_PROTOCOL

with warnings.catch_warnings():
    # uvicorn 0.54 deprecates uvicorn.workers in favour of the uvicorn-worker package; the class
    # is the same and still maintained in uvicorn.
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker


class Worker(UvicornWorker):
    """uvicorn's gunicorn worker with Tollway's protocol."""

    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": PROTOCOL,
        "ws": WS_PROTOCOL,
        "ws_max_size": MAX_MESSAGE_CEILING,
        "proxy_headers": False,
        "server_header": False,
    }
