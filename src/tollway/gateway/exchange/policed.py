"""The ASGI path's forwarding when a policy chain applies: response edits, cache, timeout,
streamed size limit and byte quotas around :meth:`Gateway.forward`."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from tollway import problems
from tollway.gateway.exchange.policing import Pending, Policing, Preflight
from tollway.gateway.snapshot.state import Route
from tollway.gateway.upstream.backends import BodyFraming, UpstreamRequest
from tollway.policies.base import Reject
from tollway.policies.cache import marker_names, vary_marker
from tollway.policies.chain import EMPTY_CHAIN
from tollway.stores.base import CachedResponse, CacheStore, StoreUnavailable
from tollway.types import Headers, Message, Receive, Send


class Gateway(Protocol):
    """What a policed exchange uses of the :class:`~.gateway.Gateway` (no import cycle)."""

    policing: Policing
    cache_store: CacheStore

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
    ) -> tuple[int, int, int]: ...

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


def body_too_large(size: int | None, limit: int) -> Reject:
    """413 for a body over ``limit`` (``size`` when the client announced it)."""
    told = f"The body has {size} bytes; " if size is not None else "The body is too large; "
    return Reject(problems.REQUEST_TOO_LARGE, f"{told}this API accepts at most {limit}.")


async def send_preflight(send: Send, preflight: Preflight) -> None:
    headers = [(b"content-length", b"0"), *preflight.headers]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class PolicedExchange:
    """One request through a policy chain on the ASGI path."""

    def __init__(
        self,
        gateway: Gateway,
        route: Route,
        request: UpstreamRequest,
        subscription_id: int,
        pending: Pending | None,
        started: float,
        client_ip: str,
        max_body: int,
    ) -> None:
        self.client_ip = client_ip
        self.gateway = gateway
        self.route = route
        self.request = request
        self.subscription_id = subscription_id
        self.pending = pending
        self.chain = pending.chain if pending is not None else EMPTY_CHAIN
        self.max_body = max_body
        self.started = started
        self.response_started = False
        self.too_large = False
        self.body_seen = 0

    async def run(self, receive: Receive, send: Send) -> None:
        raw_send = send
        send = self._editing(send)
        cache = self.chain.cache
        key = cache.key(self.pending.ctx, self.request.query) if cache and self.pending else None
        if key is not None:
            if await self._serve_cached(key, send):
                return
            if self.request.method == "GET":
                send = self._capturing(key, send)
        if self.request.framing == BodyFraming.CHUNKED:
            receive = self._limited(receive)
        try:
            if self.chain.timeout is None:
                status, bytes_in, bytes_out = await self._forward(receive, send)
            else:
                async with asyncio.timeout(self.chain.timeout):
                    status, bytes_in, bytes_out = await self._forward(receive, send)
        except TimeoutError:
            if not self.response_started:
                await problems.send_problem(raw_send, problems.BACKEND_TIMEOUT)
            self._record(504, 0, 0)
            return
        if self.too_large:
            if not self.response_started:
                refused = body_too_large(None, self.max_body)
                await problems.send_problem(raw_send, refused.problem, refused.detail)
            self._record(413, self.body_seen, 0)
            return
        self._record(status, bytes_in, bytes_out)
        self.gateway.policing.record_bytes(self.pending, bytes_in + bytes_out)

    async def _forward(self, receive: Receive, send: Send) -> tuple[int, int, int]:
        return await self.gateway.forward(
            self.route,
            self.request,
            self.subscription_id,
            receive,
            send,
            self.started,
            record=False,
        )

    def _record(self, status: int, bytes_in: int, bytes_out: int) -> None:
        client = self.client_ip or self.request.scope.get("client")
        self.gateway.record_exchange(
            self.route,
            self.subscription_id,
            status,
            bytes_in,
            bytes_out,
            self.started,
            self.request.method,
            client,
        )

    def _editing(self, send: Send) -> Send:
        extra = self.pending.response_headers if self.pending is not None else []
        edits = self.chain.header_edits

        async def edited(message: Message) -> None:
            if self.too_large and not self.response_started:
                return  # the backend's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                self.response_started = True
                headers: Headers = list(message.get("headers", []))
                for edit in edits:
                    headers = edit.edit_response(headers)
                message = {**message, "headers": headers + extra}
            await send(message)

        return edited

    def _limited(self, receive: Receive) -> Receive:
        """Stop the body at the limit: the backend sees the client leave, the client a 413."""
        limit = self.max_body

        async def limited() -> Message:
            if self.too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            self.body_seen += len(message.get("body", b""))
            if self.body_seen > limit:
                self.too_large = True
                return {"type": "http.disconnect"}
            return message

        return limited

    async def _lookup(self, key: str) -> CachedResponse | None:
        """The entry for ``key``, following a Vary marker to the variant for this request."""
        cache = self.chain.cache
        assert cache is not None
        assert self.pending is not None  # (a cache key needs the request's context)
        try:
            hit = await self.gateway.cache_store.get(key)
            names = None if hit is None else marker_names(hit)
            if names is not None:
                hit = await self.gateway.cache_store.get(
                    cache.variant_key(key, names, self.pending.ctx)
                )
        except StoreUnavailable:
            return None
        return hit

    async def _serve_cached(self, key: str, send: Send) -> bool:
        hit = await self._lookup(key)
        if hit is None or marker_names(hit) is not None:
            return False
        age = max(0, int(time.time() - hit.stored_at))
        headers = [
            *hit.headers,
            (b"content-length", str(len(hit.body)).encode()),
            (b"age", str(age).encode()),
            (b"x-cache", b"HIT"),
        ]
        body = b"" if self.request.method == "HEAD" else hit.body
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._record(hit.status, 0, len(body))
        return True

    def _capturing(self, key: str, send: Send) -> Send:
        cache = self.chain.cache
        assert cache is not None
        state: dict[str, object] = {"status": 0, "headers": [], "ok": False, "vary": None}
        parts: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal size
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                state["vary"] = cache.vary(message["status"], headers)
                state["ok"] = state["vary"] is not None
                state["status"], state["headers"] = message["status"], headers
                message = {**message, "headers": [*headers, (b"x-cache", b"MISS")]}
            elif message["type"] == "http.response.body" and state["ok"]:
                size += len(message.get("body", b""))
                if size > cache.max_entry_bytes:
                    state["ok"] = False
                    parts.clear()
                else:
                    parts.append(message.get("body", b""))
                if not message.get("more_body", False) and state["ok"]:
                    await self._store(key, state, b"".join(parts))
            await send(message)

        return capture

    async def _store(self, key: str, state: dict[str, object], body: bytes) -> None:
        cache = self.chain.cache
        assert cache is not None
        headers = [
            (n, v)
            for n, v in state["headers"]  # type: ignore[attr-defined]
            if n not in (b"content-length", b"transfer-encoding", b"x-cache", b"age")
        ]
        status = state["status"]
        assert isinstance(status, int)
        now = time.time()
        entry = CachedResponse(status, headers, body, now)
        names = state["vary"]
        assert isinstance(names, list)
        try:
            if names:  # one marker naming the varied headers, one entry per variant
                assert self.pending is not None  # (a cache key needs the request's context)
                await self.gateway.cache_store.put(key, vary_marker(names, now), cache.ttl)
                key = cache.variant_key(key, names, self.pending.ctx)
            await self.gateway.cache_store.put(key, entry, cache.ttl)
        except StoreUnavailable:
            return
