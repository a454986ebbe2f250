"""WebSocket APIs: admit the upgrade like any call, then move messages both ways.

``Gateway.__call__`` hands every ASGI ``websocket`` scope here. WebSockets always take the ASGI
transport: uvicorn's protocol switch (``GuardedProtocol.handle_websocket_upgrade``) hands the
connection to the WebSocket protocol (``gateway/transport/websocket.py``), which calls the
gateway; the fast transport never sees them.

1. **Admission**, the same as for any call (the exchange core, ``exchange/core.py``): the key
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
from typing import Any, Protocol
from urllib.parse import quote

from tollway import problems
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.exchange.core import Answer, ApiExchange, Gateway
from tollway.gateway.exchange.policing import Pending
from tollway.gateway.exchange.websocket_session import POLICY, Session
from tollway.gateway.recording import accesslog
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.upstream.client import UpstreamError
from tollway.gateway.upstream.websocket import (
    SocketRefused,
    SocketRequest,
    UpstreamSocket,
    open_socket,
)
from tollway.policies.base import Reject
from tollway.policies.websocket import DEFAULT_LIMITS, SessionLimits
from tollway.settings import Settings
from tollway.types import Message, Receive, Scope, Send

logger = logging.getLogger("tollway.gateway")

SWITCHED = 101  # the status usage records for a session
HTTP_RESPONSE = "websocket.http.response"  # the ASGI extension for answers before the upgrade


class GatewayCore(Gateway, Protocol):
    """What the WebSocket proxy uses of ``Gateway`` (``gateway/exchange/gateway.py``)."""

    settings: Settings
    health: Any  # (GatewayHealth: ``loaded``)


async def serve_websocket(gateway: GatewayCore, scope: Scope, receive: Receive, send: Send) -> None:
    """Admit a WebSocket upgrade, open the backend's side, then run the session until it ends."""
    if (await receive())["type"] != "websocket.connect":
        return
    await Upgrade(gateway, scope, send).run(receive)


class Upgrade:
    """One WebSocket upgrade, from its admission to the end of its session; what it means
    (admission, the gateway's answers, recording) is the exchange core's, as for any call."""

    def __init__(self, gateway: GatewayCore, scope: Scope, send: Send) -> None:
        self.gateway = gateway
        self.scope = scope
        self.send = send
        self.http_answers = HTTP_RESPONSE in (scope.get("extensions") or {})
        self.trace = CallTrace()  # request id, trace context, notes for recording (calltrace.py)

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
        self.trace.path = rest
        exchange = ApiExchange(gateway, route, "GET", scope.get("client"), self.trace)
        if not await self.admit(exchange, rest):
            return
        admission, pending = exchange.admission, exchange.policy
        assert admission is not None
        limits = _limits(pending)
        request = SocketRequest(
            rest,
            admission.query,
            exchange.forwarded_headers(),
            admission.host,
            list(scope.get("subprotocols") or []),
            scope,
            exchange.head_timeout,
        )
        upstream = await self.open(exchange, request, limits)
        if upstream is None:
            return
        session = Session(upstream, limits, receive, self.send)
        try:
            headers = pending.edit_response([]) if pending is not None else []
            headers.append((b"x-request-id", self.trace.request_id))
            accept = {"type": "websocket.accept", "subprotocol": upstream.subprotocol}
            await self.send({**accept, "headers": headers})
            await session.run()
        finally:
            await session.finish()
            self.record(exchange, session)

    async def admit(self, exchange: ApiExchange, rest: bytes) -> bool:
        """The admission (as for any call: a GET); False once the refusal is sent."""
        scope = self.scope
        answer = exchange.admit_request(
            rest,
            scope["headers"],
            scope.get("query_string", b""),
            "https" if scope.get("scheme") == "wss" else "http",
        )
        exchange.cache_key = None  # (an upgrade is never answered from the cache)
        if answer is None and exchange.must_settle():
            answer = await exchange.settle()
        if answer is None:
            return True
        await self.give(answer)
        exchange.end()
        return False

    async def open(
        self, exchange: ApiExchange, request: SocketRequest, limits: SessionLimits
    ) -> UpstreamSocket | None:
        """The backend's side of the session, or None once the client has its answer."""
        try:
            return await open_socket(exchange.route.backend, request, limits.max_message_bytes)
        except SocketRefused as refused:
            await self.relay(refused)
            exchange.status = refused.status
        except UpstreamError as exc:
            await self.give(exchange.failure_answer(exc))
        exchange.end()
        return None

    async def give(self, answer: Answer) -> None:
        """One of the gateway's own answers (from the exchange core), before the upgrade."""
        if not self.http_answers:
            await self.send({"type": "websocket.close", "code": POLICY})
            return
        status, headers, body = answer
        headers = [*headers, (b"x-request-id", self.trace.ensure(self.scope["headers"]))]
        await self.send_http({"type": "http.response.start", "status": status, "headers": headers})
        await self.send_http({"type": "http.response.body", "body": body})

    async def answer(self, reject: Reject) -> None:
        """Problem+json over the ``websocket.http.response`` extension; a server without it
        gets a close with 1008 (which it answers with 403)."""
        if not self.http_answers:
            await self.send({"type": "websocket.close", "code": POLICY})
            return
        await problems.send_problem(
            self.send_http,
            reject.problem,
            reject.detail,
            headers=reject.headers,
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
        headers.append((b"x-request-id", self.trace.request_id))
        await self.send_http(
            {"type": "http.response.start", "status": refused.status, "headers": headers}
        )
        await self.send_http({"type": "http.response.body", "body": refused.body})

    async def send_http(self, message: Message) -> None:
        await self.send({**message, "type": "websocket." + message["type"]})

    def record(self, exchange: ApiExchange, session: Session) -> None:
        """One call, status 101, bytes each way (the core's recording and byte quotas), and
        the access log's session line."""
        exchange.status = SWITCHED
        exchange.bytes_in, exchange.bytes_out = session.bytes_in, session.bytes_out
        self.trace.websocket = (session.closed_with, session.messages_in, session.messages_out)
        exchange.end()
        if self.gateway.settings.access_log is True:  # (json: in the call's own line)
            peer = exchange.peer
            accesslog.websocket_session(
                peer if isinstance(peer, str) else (peer[0] if peer else ""),
                exchange.route.prefix,
                session.closed_with,
                session.messages_in,
                session.messages_out,
                exchange.subscription_id,
            )


def _limits(pending: Pending | None) -> SessionLimits:
    policy = pending.chain.websocket if pending is not None else None
    return DEFAULT_LIMITS if policy is None else policy.limits
