"""The gateway ASGI application: route, admit, and hand API calls to the exchange core.

Raw ASGI on the hot path (no framework routing per request). ``Gateway.admit`` is the admission
both transports use (through ``exchange.core.ApiExchange``); ``Gateway.handle_api`` is the ASGI
transport's entry for an API call (``exchange.asgi``); ``Gateway.record_exchange`` is the one
recording call for every API call. Tollway's own pages (``/docs``, ``/-/``, ``/portal``) are
separate apps mounted on reserved prefixes by the composition root,
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
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.exchange.asgi import AsgiExchange
from tollway.gateway.exchange.core import Admission, ApiExchange, Denied, Outcome, body_too_large
from tollway.gateway.exchange.hosting import take_over_host
from tollway.gateway.exchange.policing import Pending, Policing, Preflight
from tollway.gateway.exchange.websocket import serve_websocket
from tollway.gateway.recording import accesslog
from tollway.gateway.recording.observe import Observer
from tollway.gateway.recording.usage import UsageBuffer, write_usage
from tollway.gateway.snapshot.refresh import StateLoader
from tollway.gateway.snapshot.routing import normalise_path
from tollway.gateway.snapshot.state import EMPTY_STATE, GatewayState, Route, retired_backends
from tollway.gateway.upstream.forwarding import prepare_request, take_query_key
from tollway.policies.base import Reject, RequestContext
from tollway.policies.chain import EMPTY_CHAIN, Chain
from tollway.policies.limits import collect_limits
from tollway.proxies import ProxyTrust
from tollway.settings import Settings
from tollway.stores import open_stores
from tollway.types import ASGIApp, Headers, Message, Receive, Scope, Send

logger = logging.getLogger("tollway.gateway")

PRUNE_EVERY = 600.0


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
        self.observer = Observer(settings)  # metrics, access log, spans (recording/observe.py)
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
        trace = CallTrace(match[1] if match is not None else path or raw)  # (observability)
        send = trace.stamping(send, scope["headers"])  # X-Request-ID on every response
        if match is not None:
            await self.handle_api(match[0], match[1], scope, receive, send, trace)
            return
        if not self.settings.access_log:
            await self._serve_own(path, scope, receive, send)
            return
        client = accesslog.client_of(scope, self.trust)

        async def own(scope: Scope, receive: Receive, send: Send) -> None:
            await self._serve_own(path, scope, receive, send)

        json_log = self.observer.json_log
        await accesslog.serve_logged(
            own, scope, receive, send, client, path or raw, trace, json_log
        )

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
        trace: CallTrace,
    ) -> Outcome:
        """Decide whether a request may go to the route's backend (no I/O, no awaiting).

        Called by the exchange core (``ApiExchange.admit_request``) on both transports: operation
        allow-list, CORS preflight, IP filters, key, then the rest of the policy chain
        (docs/policies.md). Work that needs awaiting is left in ``Admission.pending`` for
        ``ApiExchange.settle``.
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
        prepared = prepare_request(headers, peer, scheme, route.key_header, self.trust, trace)
        ctx = RequestContext(method, rest, headers, prepared.client, route.api_id, 0.0)
        trace.ctx = ctx  # (what the recording reads: grant, cache result)
        if base.answer_preflight_hooks and method == "OPTIONS":
            preflight = base.answer_preflight(ctx)
            if preflight is not None:
                return preflight if isinstance(preflight, Reject) else Preflight(preflight)
        if base.check_access_hooks and (refused := base.check_access(ctx)) is not None:
            return refused
        key, query = take_query_key(query, route.key_query)
        key = prepared.key or key
        grant = self.state.keys.lookup(hashlib.sha256(key).digest()) if key else None
        if route.subscription_required:
            if not key:
                return problems.MISSING_KEY
            if grant is None:
                return problems.INVALID_KEY
            if grant.product_id not in route.products:  # (products of the current config)
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

    def _apply_chain(
        self, chain: Chain, ctx: RequestContext, admission: Admission
    ) -> Reject | None:
        # (product-scope filters apply once the key is known)
        if chain.check_access_hooks and (refused := chain.check_access(ctx)) is not None:
            return refused
        pending = Pending(chain, ctx, collect_limits(chain, ctx))
        if chain.response_headers_hooks:
            pending.response_headers += chain.response_headers(ctx.headers)
        admission.pending = pending
        return self.policing.apply_limits(pending)

    async def handle_api(
        self,
        route: Route,
        rest: bytes,
        scope: Scope,
        receive: Receive,
        send: Send,
        trace: CallTrace,
    ) -> None:
        """An API call on the ASGI transport (the exchange core decides, ``exchange.asgi``
        passes the messages)."""
        exchange = AsgiExchange(self, route, scope["method"], scope.get("client"), trace)
        await exchange.run(rest, scope, receive, send)

    def record_exchange(self, exchange: ApiExchange) -> None:
        """The one recording call, for every API call on both transports, with the exchange as
        the record (``ApiExchange``: status, bytes, latency; its ``trace`` carries the upstream
        time, the problem the gateway answered with and the request id): usage, then metrics,
        access log and span (``recording/observe.py``).

        The log line names the client (as resolved through trusted proxies, when known) and the
        API, never the path's query string (it may carry the key).
        """
        route, sid, status = exchange.route, exchange.subscription_id, exchange.status
        bytes_in, bytes_out, latency_ms = exchange.bytes_in, exchange.bytes_out, exchange.latency_ms
        trace = exchange.trace
        session = trace.websocket if trace is not None else None
        messages = None if session is None else (session[1], session[2])
        self.usage.record(sid, route.api_id, status, bytes_in, bytes_out, latency_ms, messages)
        peer = exchange.peer
        address = (peer if isinstance(peer, str) else peer[0]) if peer else ""
        self.observer.call(
            route, sid, status, bytes_in, bytes_out, latency_ms, exchange.method, address,
            exchange.trace,
        )  # fmt: skip

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
        self.observer.start()

    async def shutdown(self) -> None:
        """Stop background work, write buffered usage, close backend connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.observer.stop()
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
        """Load everything from the store now (serialised with the polls: the key index has
        one writer at a time)."""
        async with self._refresh_lock:
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
