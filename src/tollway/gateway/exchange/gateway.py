"""The gateway ASGI application: route, authenticate, forward, record.

Raw ASGI on the hot path (no framework routing per request). Tollway's own pages (``/docs``,
``/-/``, ``/portal``) are separate apps mounted on reserved prefixes by the composition root,
:func:`tollway.site.compose.create_gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tollway import problems
from tollway.crypto import SecretBox
from tollway.db.session import make_engine, session_factory
from tollway.gateway.exchange.hosting import take_over_host
from tollway.gateway.exchange.policed import PolicedExchange, body_too_large, send_preflight
from tollway.gateway.exchange.policing import Pending, Policing, Preflight
from tollway.gateway.exchange.websocket import serve_websocket
from tollway.gateway.recording import accesslog
from tollway.gateway.recording.usage import UsageBuffer, write_usage
from tollway.gateway.snapshot.refresh import StateLoader
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.snapshot.state import EMPTY_STATE, GatewayState, Route, retired_backends
from tollway.gateway.upstream.backends import BodyFraming, ResponseAborted, UpstreamRequest
from tollway.gateway.upstream.client import NoTargetAvailable, UpstreamError, UpstreamTimeout
from tollway.gateway.upstream.forwarding import prepare_request, take_query_key
from tollway.gateway.upstream.pool import backend_unavailable
from tollway.policies.base import Reject, RequestContext
from tollway.policies.chain import EMPTY_CHAIN, Chain
from tollway.policies.limits import collect_limits
from tollway.proxies import ProxyTrust
from tollway.settings import Settings
from tollway.stores import open_stores
from tollway.types import ASGIApp, Headers, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.gateway")

PRUNE_EVERY = 600.0


@dataclass(slots=True)
class Admission:
    """A request the gateway lets through, with what the backend should receive."""

    subscription_id: int
    headers: Headers
    host: bytes
    framing: int
    query: bytes
    pending: Pending | None = None  # policy work left, and headers for the response
    client_ip: str = ""  # the client's address, through trusted proxies (for the access log)
    max_body: int = 0  # the largest body forwarded: a request-size-limit, else the default


@dataclass(frozen=True, slots=True)
class Denied:
    """A refusal that is attributed to a subscription (its usage is recorded against it)."""

    problem: problems.ProblemType | Reject
    subscription_id: int


Outcome = Admission | Denied | problems.ProblemType | Reject | Preflight


def refusal(outcome: problems.ProblemType | Denied | Reject) -> tuple[Reject, int]:
    """The refusal to send, and the subscription its usage is recorded against."""
    if isinstance(outcome, Denied):
        inner = outcome.problem
        return (inner if isinstance(inner, Reject) else Reject(inner)), outcome.subscription_id
    if isinstance(outcome, Reject):
        return outcome, 0
    return Reject(outcome), 0


@dataclass
class GatewayHealth:
    """What ``/-/ready`` reports."""

    loaded: bool = False
    last_store_contact: float = 0.0
    store_error: str | None = None
    usage_write_failures: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class Gateway:
    """The ASGI app that ``tollway serve`` runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._owns_engine = engine is None  # (an engine passed in is the caller's to close)
        self.engine = engine or make_engine(settings.database_url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.secret_box = SecretBox(secret)
        self.loader = StateLoader(self.sessions, self.secret_box)
        self.state: GatewayState = EMPTY_STATE
        self.health = GatewayHealth()
        self.trust = ProxyTrust(settings.trusted_proxies)
        self.usage = UsageBuffer(settings.usage_buffer_limit, clock)
        self.clock = clock
        self.counters, self.cache_store = open_stores(
            settings.redis_url, cache_bytes=settings.cache_bytes
        )
        self.policing = Policing(self.counters, fail_closed=settings.limits_fail_closed)
        self.mounts: dict[bytes, ASGIApp] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._host_checked = False  # see gateway.hosting
        self._refresh_lock = asyncio.Lock()

    def mount(self, prefix: str, app: ASGIApp) -> None:
        """Serve ``app`` under a reserved prefix such as ``/docs`` (the app sees full paths)."""
        self.mounts[prefix.encode()] = app

    # ASGI ---------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not self._host_checked:
            self._host_checked = True
            if take_over_host(self) and kind == "http":
                # (no lifespan: this first request may carry a client address uvicorn rewrote)
                await problems.send_problem(send, problems.NOT_READY)
                return
        if kind == "http":
            await self.handle_http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await serve_websocket(self, scope, receive, send)  # (gateway/exchange/websocket.py)

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or quote(scope["path"]).encode()
        path = normalise_path(raw)
        match = None if path is None else self.state.routes.match(path)
        if match is not None:
            await self.handle_api(match[0], match[1], scope, receive, send)
            return
        if not self.settings.access_log:
            await self._serve_own(path, scope, receive, send)
            return
        client = accesslog.client_of(scope, self.trust)

        async def own(scope: Scope, receive: Receive, send: Send) -> None:
            await self._serve_own(path, scope, receive, send)

        await accesslog.serve_logged(own, scope, receive, send, client, path or raw)

    async def _serve_own(
        self, path: bytes | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Tollway's own pages (``/docs``, ``/-/``, ``/portal``) and answers outside any API."""
        if path is None:
            await problems.send_problem(send, problems.BAD_PATH)
            return
        end = path.find(b"/", 1)
        mounted = self.mounts.get(path if end == -1 else path[:end])
        if mounted is not None:
            await mounted(
                {**scope, "path": path.decode("latin-1"), "raw_path": path}, receive, send
            )
            return
        if not self.health.loaded:
            await problems.send_problem(send, problems.NOT_READY)
            return
        await problems.send_problem(send, problems.NOT_FOUND)

    def admit(
        self,
        route: Route,
        method: str,
        rest: bytes,
        headers: Headers,
        query: bytes,
        peer: str,
        scheme: str,
    ) -> Outcome:
        """Decide whether a request may go to the route's backend (no I/O, no awaiting).

        Shared by the ASGI path and the fast path (``gateway.transport.fastpath``), so both apply
        the same rules in the same order: operation allow-list, CORS preflight, IP filters, key,
        then the rest of the policy chain (docs/policies.md). Work that needs awaiting is left in
        ``Admission.pending`` for ``Policing.settle``.
        """
        op_key = None
        if route.operations is not None:
            operation = route.operations.find(method, rest)
            if operation is None:
                return problems.OPERATION_NOT_FOUND
            if operation.policies:
                op_key = (operation.method, operation.template)
        policies = self.state.policies
        base = policies.chain(route.api_id, op_key, None)
        prepared = prepare_request(headers, peer, scheme, route.key_header, self.trust)
        ctx = RequestContext(method, rest, headers, prepared.client, route.api_id, 0.0)
        if base.cors is not None and method == "OPTIONS":
            preflight = self._preflight(base, ctx)
            if preflight is not None:
                return preflight
        for ip_filter in base.ip_filters:
            if (refused := ip_filter.check(ctx)) is not None:
                return refused
        key, query = take_query_key(query, route.key_query)
        key = prepared.key or key
        grant = self.state.keys.lookup(hashlib.sha256(key).digest()) if key else None
        if route.subscription_required:
            if not key:
                return problems.MISSING_KEY
            if grant is None:
                return problems.INVALID_KEY
            if route.api_id not in grant.api_ids:
                return Denied(problems.FORBIDDEN_API, grant.subscription_id)
        sid = grant.subscription_id if grant else 0
        ctx.grant = grant
        chain = base if grant is None else policies.chain(route.api_id, op_key, grant.product_id)
        max_body = self.settings.max_body_bytes if chain.max_body is None else chain.max_body
        if prepared.length > max_body:
            return Denied(body_too_large(prepared.length, max_body), sid)
        prepared.headers.append((b"x-forwarded-prefix", route.prefix_bytes))
        admission = Admission(
            sid,
            prepared.headers,
            prepared.host,
            prepared.framing,
            query,
            None,
            prepared.client,
            max_body,
        )
        if chain is EMPTY_CHAIN:
            return admission
        ctx.now = self.clock()  # (only policies that count need the time)
        refused = self._apply_chain(chain, ctx, admission)
        return admission if refused is None else Denied(refused, sid)

    def _preflight(self, chain: Chain, ctx: RequestContext) -> Preflight | Reject | None:
        origin = ctx.header(b"origin")
        wanted = ctx.header(b"access-control-request-method")
        if chain.cors is None or origin is None or wanted is None:
            return None
        requested = ctx.header(b"access-control-request-headers")
        allowed = chain.cors.preflight(origin, wanted, requested)
        return Reject(problems.CORS_FORBIDDEN) if allowed is None else Preflight(allowed)

    def _apply_chain(
        self, chain: Chain, ctx: RequestContext, admission: Admission
    ) -> Reject | None:
        for ip_filter in chain.ip_filters:  # (product-scope filters apply once the key is known)
            if (refused := ip_filter.check(ctx)) is not None:
                return refused
        pending = Pending(chain, ctx, collect_limits(chain, ctx))
        if chain.cors is not None:
            pending.response_headers += chain.cors.response_headers(ctx.header(b"origin"))
        for edit in chain.header_edits:
            admission.headers = edit.edit_request(admission.headers)
        admission.pending = pending
        return self.policing.apply_limits(pending)

    async def handle_api(
        self, route: Route, rest: bytes, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        client = scope.get("client")
        outcome = self.admit(
            route,
            method,
            rest,
            scope["headers"],
            scope.get("query_string", b""),
            client[0] if client else "",
            scope.get("scheme", "http"),
        )
        if isinstance(outcome, Preflight):
            await send_preflight(send, outcome)
            self.record_exchange(route, 0, 204, 0, 0, started, method, client)
            return
        if not isinstance(outcome, Admission):
            await self._refuse(route, outcome, send, started, method, client, scope["headers"])
            return
        pending = outcome.pending
        if pending is not None and self.policing.needs_settling(pending):
            refused = await self.settle(outcome, pending)
            if refused is not None:
                denied = Denied(refused, outcome.subscription_id)
                await self._refuse(route, denied, send, started, method, client, scope["headers"])
                return
        request = UpstreamRequest(
            method,
            rest,
            outcome.query,
            outcome.headers,
            outcome.host,
            outcome.framing,
            scope,
            route.prefix_bytes,
            pending.chain.timeout if pending is not None else None,
        )
        sid = outcome.subscription_id
        if pending is None and outcome.framing != BodyFraming.CHUNKED:
            await self.forward(
                route, request, sid, receive, send, started, client_ip=outcome.client_ip
            )
            return
        # (A chunked body's size is only known as it streams: PolicedExchange counts it.)
        exchange = PolicedExchange(
            self, route, request, sid, pending, started, outcome.client_ip, outcome.max_body
        )
        await exchange.run(receive, send)

    async def settle(self, admission: Admission, pending: Pending) -> Reject | None:
        """The policy work that needs awaiting (JWT checks, limits on Redis), then the request
        edits that depend on it (claims to headers). Both transports call this."""
        refused = await self.policing.settle(pending)
        if refused is None:
            for policy in pending.chain.jwts:
                admission.headers = policy.edit_request(admission.headers, pending.ctx.claims)
        return refused

    def refusal_headers(self, route: Route, headers: Headers) -> Headers:
        """CORS headers for a refusal, so browser code can read why it was refused."""
        cors = self.state.policies.chain(route.api_id, None, None).cors
        if cors is None:
            return []
        origin = next((value for name, value in headers if name == b"origin"), None)
        return cors.response_headers(origin)

    async def _refuse(
        self,
        route: Route,
        outcome: problems.ProblemType | Denied | Reject,
        send: Send,
        started: float,
        method: str,
        client: tuple[str, int] | None,
        scope_headers: Headers,
    ) -> None:
        reject, subscription_id = refusal(outcome)
        await problems.send_problem(
            send,
            reject.problem,
            reject.detail,
            headers=reject.headers + self.refusal_headers(route, scope_headers),
            status=reject.status,
            **reject.extra,
        )
        status = reject.status or reject.problem.status
        self.record_exchange(route, subscription_id, status, 0, 0, started, method, client)

    async def forward(
        self,
        route: Route,
        request: UpstreamRequest,
        subscription_id: int,
        receive: Receive,
        send: Send,
        started: float,
        *,
        record: bool = True,
        client_ip: str = "",
    ) -> tuple[int, int, int]:
        """Forward, record the exchange (unless told not to), return (status, in, out)."""
        method, client = request.method, client_ip or request.scope.get("client")
        outcome = await self._forward_once(route, request, receive, send)
        if record:
            status, bytes_in, bytes_out = outcome
            self.record_exchange(
                route, subscription_id, status, bytes_in, bytes_out, started, method, client
            )
        return outcome

    async def _forward_once(
        self, route: Route, request: UpstreamRequest, receive: Receive, send: Send
    ) -> tuple[int, int, int]:
        try:
            result = await route.backend.forward(request, receive, send)
        except UpstreamTimeout as exc:
            logger.warning("api %s: %s", route.name, exc)
            await problems.send_problem(send, problems.BACKEND_TIMEOUT)
            return 504, 0, 0
        except NoTargetAvailable as exc:  # (before UpstreamError, its base class)
            reject = backend_unavailable(exc)
            await problems.send_problem(send, reject.problem, reject.detail, headers=reject.headers)
            return 503, 0, 0
        except UpstreamError as exc:
            logger.warning("api %s: %s", route.name, exc)
            await problems.send_problem(send, problems.BACKEND_UNREACHABLE)
            return 502, 0, 0
        except ResponseAborted as exc:
            # Headers already went out: all we can do is cut the connection short.
            logger.warning("api %s: response cut short: %s", route.name, exc)
            return exc.status, 0, exc.bytes_out
        return result.status, result.bytes_in, result.bytes_out

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
    ) -> None:
        """Count the call for usage and, when enabled, write an access-log line.

        The log line names the client (as resolved through trusted proxies, when known) and the
        API, never the path's query string (it may carry the key).
        """
        latency_ms = (time.perf_counter() - started) * 1000
        self.usage.record(subscription_id, route.api_id, status, bytes_in, bytes_out, latency_ms)
        if self.settings.access_log:
            address = (client if isinstance(client, str) else client[0]) if client else ""
            accesslog.api_call(address, method, route.prefix, status, latency_ms, subscription_id)

    # lifecycle ----------------------------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message: Message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            await self.startup()
        except Exception as exc:
            logger.error("gateway failed to start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await self.shutdown()
        await send({"type": "lifespan.shutdown.complete"})

    async def startup(self) -> None:
        """Load the state (retrying in the background if the store is down) and start tasks."""
        if self._started:
            return
        self._started = True
        try:
            await self.reload()
        except Exception as exc:
            self._store_failed(exc)
        self._tasks = [
            asyncio.create_task(self._every(self.settings.refresh_interval, self.refresh)),
            asyncio.create_task(self._every(self.settings.usage_flush_interval, self.flush_usage)),
            asyncio.create_task(self._every(PRUNE_EVERY, self._prune)),
        ]

    async def shutdown(self) -> None:
        """Stop background work, write buffered usage, close backend connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.flush_usage()
        if self.usage.rows:
            lost = sum(int(row[0]) for row in self.usage.rows.values())
            logger.error(
                "shutting down with %d calls of usage not written (store unreachable)", lost
            )
        for backend in list(self.state.backends.values()):
            await backend.shutdown()
        if self.counters.is_shared:
            await self.counters.aclose()  # (memory counters stay: a restart in-process keeps them)
        if self._owns_engine:
            # Closing the pool lets SQLite checkpoint and remove its -wal/-shm files.
            await asyncio.to_thread(self.engine.dispose)
        self._started = False

    async def reload(self) -> None:
        """Load everything from the store now."""
        new = await asyncio.to_thread(self.loader.load_full, self.state)
        await self._swap(new)

    async def refresh(self) -> None:
        """Apply changes made by other processes since the last poll.

        Serialised: a caller that asks while the background poll runs waits for it, so when
        ``refresh()`` returns, every change committed before the call is in effect.
        """
        async with self._refresh_lock:
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            if not self.health.loaded:
                new: GatewayState | None = await asyncio.to_thread(
                    self.loader.load_full, self.state
                )
            else:
                new = await asyncio.to_thread(self.loader.poll, self.state)
        except Exception as exc:
            self._store_failed(exc)
            return
        if new is not None:
            await self._swap(new)
        self._store_ok()

    async def _swap(self, new: GatewayState) -> None:
        old, self.state = self.state, new
        self._store_ok()
        self.health.loaded = True
        for backend in retired_backends(old, new):
            await backend.shutdown()
        if self._started:
            for backend in new.backends.values():
                if backend not in old.backends.values():
                    await backend.startup()

    async def flush_usage(self) -> None:
        rows = self.usage.take()
        if not rows:
            return
        try:
            await asyncio.to_thread(write_usage, self.engine, rows)
        except Exception as exc:
            self.usage.give_back(rows)
            self.health.usage_write_failures += 1
            self._store_failed(exc)

    async def _prune(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.loader.prune_change_log)

    def _store_ok(self) -> None:
        if self.health.store_error is not None:
            logger.info("store reachable again")
        self.health.store_error = None
        self.health.last_store_contact = time.monotonic()

    def _store_failed(self, exc: BaseException) -> None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.health.store_error is None:
            logger.error("store unreachable: %s", message)
        self.health.store_error = message

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:
                logger.exception("background job failed")
