"""What the portal settles before any page: who the client is, which host it asked for, and
what to answer while the store is down.

- Client address and scheme come through trusted proxies exactly as for the gateway
  (:class:`tollway.proxies.ProxyTrust`): per-address limits count the real client, and a
  request that reached a TLS-terminating proxy over https is https here (``Secure`` cookies,
  https links and OpenID Connect redirect URIs).
- The ``Host`` header must name an allowed host: ``TOLLWAY_PUBLIC_URL``'s, those in
  ``TOLLWAY_PORTAL_ALLOWED_HOSTS``, and loopback names when no public URL is set. Anything else
  gets 400 ``portal-host-not-allowed`` (links are never built from ``Host`` anyway, but pages and
  redirects must not be served for a name an attacker chose).
- A database error before the response started becomes 503 ``portal-unavailable``.

Refusals are problem+json, or an HTML page when the client asks for HTML (a browser).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request

from tollway.portal.web import render
from tollway.problems import ProblemType, register_problem, send_problem
from tollway.proxies import ProxyTrust
from tollway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.portal")

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
STORE_DOWN = (OperationalError, InterfaceError, PoolTimeout)

HOST_NOT_ALLOWED = register_problem(
    ProblemType(
        "portal-host-not-allowed",
        "Unknown host name",
        400,
        "The portal answers only to its own host names. Open it at its public address; its "
        "operator lists the names in TOLLWAY_PUBLIC_URL and TOLLWAY_PORTAL_ALLOWED_HOSTS.",
    )
)
PORTAL_UNAVAILABLE = register_problem(
    ProblemType(
        "portal-unavailable",
        "Portal temporarily unavailable",
        503,
        "The portal cannot reach its database right now. Try again in a minute.",
    )
)


def allowed_hosts(public_url: str | None, extra: list[str]) -> frozenset[str]:
    """Host names the portal answers to."""
    hosts = {host.strip("[]").lower() for host in extra}
    if public_url is not None:
        hosts.add(urlsplit(public_url).hostname or "")
    else:
        hosts |= LOOPBACK
    return frozenset(hosts - {""})


def host_name(scope: Scope) -> str | None:
    """The host named by the request's ``Host`` header, without port (None: none or invalid)."""
    values = [value for name, value in scope["headers"] if name == b"host"]
    if len(values) != 1:
        return None
    text = values[0].decode("latin-1").strip()
    if not text or any(c in text for c in "/\\@?# \t"):
        return None
    try:
        parts = urlsplit(f"//{text}")
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return None
    return parts.hostname


def through_proxies(scope: Scope, trust: ProxyTrust) -> Scope:
    """``scope`` with the client address and scheme a trusted proxy reported."""
    client = scope.get("client")
    if not trust or not client or not trust.trusts(client[0]):
        return scope
    headers = dict(scope["headers"])  # (the last of repeated headers: what proxies append)
    address = trust.client_address(client[0], headers.get(b"x-forwarded-for"))
    scheme = trust.scheme(client[0], scope.get("scheme", "http"), headers.get(b"x-forwarded-proto"))
    return {**scope, "client": (address, 0), "scheme": scheme}


class PortalEdge:
    """ASGI middleware in front of every portal page (see the module docstring)."""

    def __init__(self, app: ASGIApp, trust: ProxyTrust, hosts: frozenset[str]) -> None:
        self.app = app
        self.trust = trust
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = through_proxies(scope, self.trust)
        if host_name(scope) not in self.hosts:
            logger.info("portal: refused a request for a host name that is not allowed")
            await refuse(scope, receive, send, HOST_NOT_ALLOWED)
            return
        watch = StartWatch(send)
        try:
            await self.app(scope, receive, watch)
        except STORE_DOWN as exc:
            logger.error("portal: database unreachable (%s)", type(exc).__name__)
            if watch.started:
                raise
            await refuse(scope, receive, send, PORTAL_UNAVAILABLE)


class StartWatch:
    """``send`` that notes whether the response head went out: an error after that cannot be
    answered any more (the portal's edge and the admin API's safety net)."""

    __slots__ = ("send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def refuse(scope: Scope, receive: Receive, send: Send, problem: ProblemType) -> None:
    """Answer with ``problem``: a page for browsers, problem+json for everyone else."""
    accept = next((v for n, v in scope["headers"] if n == b"accept"), b"")
    if b"text/html" not in accept:
        headers = [(b"cache-control", b"no-store")]
        if problem.status == 503:
            headers.append((b"retry-after", b"30"))
        await send_problem(send, problem, headers=headers)
        return
    request = Request({**scope, "session": {}})
    page = render(request, "error.html", problem.status, message=problem.explanation)
    if problem.status == 503:
        page.headers["retry-after"] = "30"
    await page(scope, receive, send)
