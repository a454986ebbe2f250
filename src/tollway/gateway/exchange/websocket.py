"""WebSocket APIs: admit the upgrade like any call, then move messages both ways.

``Gateway.__call__`` hands every ASGI ``websocket`` scope here. WebSockets always take the ASGI
transport: uvicorn's protocol switch (``GuardedProtocol.handle_websocket_upgrade``) hands the
connection to the WebSocket protocol (``gateway/transport/websocket.py``), which calls the
gateway; the fast transport never sees them.

1. **Admission**, the same as for any call (``Gateway.admit`` then ``Gateway.settle``): the key
   (header, or the API's ``key_query`` parameter, since browsers cannot set headers on a
   WebSocket: removed before forwarding and never logged), product access, ip-filter,
   validate-jwt, and the rate limits and quotas, which count the connection as one call.
   A refusal is the usual problem+json HTTP answer, sent before the upgrade through the ASGI
   ``websocket.http.response`` extension (a server without it gets a close with 1008, which
   it answers with 403).
2. **The backend's side** (``gateway/upstream/websocket.py``): an HTTP answer instead of an
   upgrade is relayed as it is; no answer is ``502``/``504`` as for any call.
3. **The session** (``gateway/exchange/websocket_session.py``): messages both ways until either
   side closes; the other side gets the same close code and reason. The ``websocket`` policy's
   limits (``policies/websocket.py``) close both sides: idle (1001), too big (1009), lifetime or
   message rate (1008); a backend that vanishes closes the client with 1011. Graceful shutdown
   closes every session with 1001 (the transport).
4. **Usage**: one call with status 101 per session (latency: how long it lasted), bytes each way
   are the messages' payloads; the access log adds a line with the messages each way.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol
from urllib.parse import quote

from tollway import problems
from tollway.gateway.exchange.policing import Pending, Policing
from tollway.gateway.exchange.websocket_session import POLICY, Session
from tollway.gateway.recording import accesslog
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.snapshot.state import GatewayState, Route
from tollway.gateway.upstream.client import NoTargetAvailable, UpstreamError, UpstreamTimeout
from tollway.gateway.upstream.pool import backend_unavailable
from tollway.gateway.upstream.websocket import (
    SocketRefused,
    SocketRequest,
    UpstreamSocket,
    open_socket,
)
from tollway.policies.base import Reject
from tollway.policies.websocket import DEFAULT_LIMITS, SessionLimits
from tollway.settings import Settings
from tollway.types import Headers, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.gateway")

SWITCHED = 101  # the status usage records for a session
HTTP_RESPONSE = "websocket.http.response"  # the ASGI extension for answers before the upgrade


class GatewayCore(Protocol):
    """What the WebSocket proxy uses of ``Gateway`` (``gateway/exchange/gateway.py``)."""

    state: GatewayState
    settings: Settings
    policing: Policing
    health: Any  # (GatewayHealth: ``loaded``)

    def admit(
        self,
        route: Route,
        method: str,
        rest: bytes,
        headers: Headers,
        query: bytes,
        peer: str,
        scheme: str,
    ) -> Any: ...

    async def settle(self, admission: Any, pending: Pending) -> Reject | None: ...

    def refusal_headers(self, route: Route, headers: Headers) -> Headers: ...

    def record_exchange(
        self,
        route: Route,
        subscription_id: int,
        status: int,
        bytes_in: int,
        bytes_out: int,
        started: float,
        method: str,
        client: tuple[str, int] | str | None,
    ) -> None: ...


async def serve_websocket(gateway: GatewayCore, scope: Scope, receive: Receive, send: Send) -> None:
    """Admit a WebSocket upgrade, open the backend's side, then run the session until it ends."""
    if (await receive())["type"] != "websocket.connect":
        return
    await Upgrade(gateway, scope, send).run(receive)


class Upgrade:
    """One WebSocket upgrade, from its admission to the end of its session."""

    def __init__(self, gateway: GatewayCore, scope: Scope, send: Send) -> None:
        self.gateway = gateway
        self.scope = scope
        self.send = send
        self.started = time.perf_counter()
        self.http_answers = HTTP_RESPONSE in (scope.get("extensions") or {})
        client = scope.get("client")
        self.peer: str = client[0] if client else ""
        self.client_ip = self.peer
        self.subscription_id = 0

    async def run(self, receive: Receive) -> None:
        gateway, scope = self.gateway, self.scope
        raw = scope.get("raw_path") or quote(scope["path"]).encode()
        path = normalise_path(raw)
        match = None if path is None else gateway.state.routes.match(path)
        if match is None:
            if path is None:
                await self.answer(Reject(problems.BAD_PATH))
            else:
                loaded = gateway.health.loaded
                await self.answer(Reject(problems.NOT_FOUND if loaded else problems.NOT_READY))
            return
        route, rest = match
        admission = await self.admit(route, rest)
        if admission is None:
            return
        pending: Pending | None = admission.pending
        limits = _limits(pending)
        request = SocketRequest(
            rest,
            admission.query,
            admission.headers,
            admission.host,
            list(scope.get("subprotocols") or []),
            scope,
            pending.chain.timeout if pending is not None else None,
        )
        upstream = await self.open(route, request, limits)
        if upstream is None:
            return
        session = Session(upstream, limits, receive, self.send)
        try:
            headers = pending.edit_response([]) if pending is not None else []
            accept = {"type": "websocket.accept", "subprotocol": upstream.subprotocol}
            await self.send({**accept, "headers": headers})
            await session.run()
        finally:
            await session.finish()
            self.record(route, session, pending)

    async def admit(self, route: Route, rest: bytes) -> Any:
        """The admission (as for any call: a GET), or None once the refusal is sent."""
        gateway, scope = self.gateway, self.scope
        outcome = gateway.admit(
            route,
            "GET",
            rest,
            scope["headers"],
            scope.get("query_string", b""),
            self.peer,
            "https" if scope.get("scheme") == "wss" else "http",
        )
        refused = _refusal(outcome)
        if refused is not None:
            await self.refuse(route, *refused)
            return None
        self.subscription_id, self.client_ip = outcome.subscription_id, outcome.client_ip
        pending = outcome.pending
        if pending is not None and gateway.policing.needs_settling(pending):
            reject = await gateway.settle(outcome, pending)
            if reject is not None:
                await self.refuse(route, reject, outcome.subscription_id)
                return None
        return outcome

    async def open(
        self, route: Route, request: SocketRequest, limits: SessionLimits
    ) -> UpstreamSocket | None:
        """The backend's side of the session, or None once the client has its answer."""
        sid = self.subscription_id
        try:
            return await open_socket(route.backend, request, limits.max_message_bytes)
        except SocketRefused as refused:
            await self.relay(refused)
            self.gateway.record_exchange(
                route, sid, refused.status, 0, 0, self.started, "GET", self.client_ip
            )
        except UpstreamTimeout as exc:
            logger.warning("api %s: %s", route.name, exc)
            await self.refuse(route, Reject(problems.BACKEND_TIMEOUT), sid)
        except NoTargetAvailable as exc:  # every target of the pool out of rotation: 503
            await self.refuse(route, backend_unavailable(exc), sid)
        except UpstreamError as exc:
            logger.warning("api %s: %s", route.name, exc)
            await self.refuse(route, Reject(problems.BACKEND_UNREACHABLE), sid)
        return None

    async def refuse(self, route: Route, reject: Reject, subscription_id: int) -> None:
        """A refusal before the upgrade, recorded like any refused call."""
        extra = self.gateway.refusal_headers(route, self.scope["headers"])
        await self.answer(reject, extra)
        status = reject.status or reject.problem.status
        self.gateway.record_exchange(
            route, subscription_id, status, 0, 0, self.started, "GET", self.client_ip
        )

    async def answer(self, reject: Reject, extra: Headers | None = None) -> None:
        """Problem+json over the ``websocket.http.response`` extension; a server without it
        gets a close with 1008 (which it answers with 403)."""
        if not self.http_answers:
            await self.send({"type": "websocket.close", "code": POLICY})
            return
        await problems.send_problem(
            self.send_http,
            reject.problem,
            reject.detail,
            headers=reject.headers + (extra or []),
            status=reject.status,
            **reject.extra,
        )

    async def relay(self, refused: SocketRefused) -> None:
        """The backend's own HTTP answer to the upgrade, passed on as it is."""
        if not self.http_answers:
            await self.send({"type": "websocket.close", "code": POLICY})
            return
        headers = [(n, v) for n, v in refused.headers if n != b"content-length"]
        headers.append((b"content-length", str(len(refused.body)).encode()))
        await self.send_http(
            {"type": "http.response.start", "status": refused.status, "headers": headers}
        )
        await self.send_http({"type": "http.response.body", "body": refused.body})

    async def send_http(self, message: Message) -> None:
        await self.send({**message, "type": "websocket." + message["type"]})

    def record(self, route: Route, session: Session, pending: Pending | None) -> None:
        """Usage (one call, status 101, bytes each way), byte quotas and the access log."""
        gateway, sid = self.gateway, self.subscription_id
        bytes_in, bytes_out = session.bytes_in, session.bytes_out
        gateway.record_exchange(
            route, sid, SWITCHED, bytes_in, bytes_out, self.started, "GET", self.client_ip
        )
        gateway.policing.record_bytes(pending, bytes_in + bytes_out)
        if gateway.settings.access_log:
            accesslog.websocket_session(
                self.client_ip,
                route.prefix,
                session.closed_with,
                session.messages_in,
                session.messages_out,
                sid,
            )


def _refusal(outcome: Any) -> tuple[Reject, int] | None:
    """The refusal in ``Gateway.admit``'s outcome and its subscription, or None (admitted).

    (Told apart by shape, so that this module does not import ``gateway.py``, which imports it.)
    """
    if isinstance(outcome, problems.ProblemType):
        return Reject(outcome), 0
    if isinstance(outcome, Reject):
        return outcome, 0
    inner = getattr(outcome, "problem", None)  # a Denied: attributed to a subscription
    if inner is not None:
        reject = inner if isinstance(inner, Reject) else Reject(inner)
        return reject, outcome.subscription_id
    if not hasattr(outcome, "pending"):  # a CORS preflight: never for a GET
        return Reject(problems.NOT_FOUND), 0
    return None


def _limits(pending: Pending | None) -> SessionLimits:
    policy = pending.chain.websocket if pending is not None else None
    return DEFAULT_LIMITS if policy is None else policy.limits
