"""What Tollway takes back from the server that hosts it (uvicorn, gunicorn's uvicorn worker).

Two uvicorn defaults would undo Tollway's own rules when the gateway runs under
``uvicorn --factory tollway.asgi:create_app`` or gunicorn's uvicorn worker (issue 9):

- ``--proxy-headers`` (on, trusting 127.0.0.1 and ::1) rewrites the request's client address and
  scheme from ``X-Forwarded-For``/``-Proto`` *before* the gateway sees them, so anyone reaching
  the port through a local hop (a TCP forwarder, an SSH tunnel, a sidecar) picks the address
  that ip-filters, per-address limits and logs use. Tollway believes those headers only from
  ``TOLLWAY_TRUSTED_PROXIES`` (``gateway.upstream.forwarding``).
- its access log writes every request line with the query string, where keys and portal tokens
  travel; Tollway writes its own (``gateway.recording.accesslog``).

ASGI gives an app no way to see the wrappers its server put around it, so when the gateway is
first called (lifespan start-up, before the server accepts connections) it looks for uvicorn's
``ProxyHeadersMiddleware`` in the call stack and makes it trust no one, and silences the
``uvicorn.access`` logger. ``tollway serve`` runs uvicorn with both off already.
"""

from __future__ import annotations

import logging
import sys

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

logger = logging.getLogger("tollway.gateway")


def wraps(wrapper: object, app: object) -> bool:
    """Whether ``app`` is inside ``wrapper`` (following the ``.app`` of middleware)."""
    for _ in range(10):
        wrapper = getattr(wrapper, "app", None)
        if wrapper is app:
            return True
    return False


def take_over_host(app: object) -> bool:
    """Undo the host server's proxy-header rewriting and access log; True if it rewrote."""
    logging.getLogger("uvicorn.access").disabled = True
    disarmed = False
    frame = sys._getframe(1)
    while frame is not None:
        wrapper = frame.f_locals.get("self")
        if isinstance(wrapper, ProxyHeadersMiddleware) and wraps(wrapper, app):
            nobody = ProxyHeadersMiddleware(wrapper.app, trusted_hosts=[])
            wrapper.trusted_hosts = nobody.trusted_hosts
            disarmed = True
        frame = frame.f_back  # type: ignore[assignment]
    if disarmed:
        logger.info(
            "ignoring uvicorn's --proxy-headers: X-Forwarded-For/-Proto are believed only from "
            "TOLLWAY_TRUSTED_PROXIES (run uvicorn with --no-proxy-headers to silence this)"
        )
    return disarmed
