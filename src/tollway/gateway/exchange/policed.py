"""The ASGI path's forwarding when a policy chain applies: response edits, cache (run by
tollway.policies.cache, as on the fast path), timeout, streamed size limit and byte quotas
around :meth:`Gateway.forward`."""

from __future__ import annotations

import time
from typing import Protocol

from tollway import problems
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.exchange.policing import Pending, Policing, Preflight
from tollway.gateway.snapshot.state import Route
from tollway.gateway.upstream.backends import BodyFraming, UpstreamRequest
from tollway.policies.base import Reject
from tollway.policies.cache import CacheCapture, hit_answer
from tollway.policies.chain import EMPTY_CHAIN
from tollway.stores.base import CachedResponse, CacheStore
from tollway.types import Message, Receive, Send


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
        trace: CallTrace | None = None,
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
        cache, pending = self.chain.cache, self.pending
        key = cache.key(pending.ctx, self.request.query) if cache and pending else None
        if cache is not None and pending is not None and key is not None:
            hit = await cache.lookup(self.gateway.cache_store, pending.ctx, key)
            if hit is not None:
                await self._serve_cached(hit, send)
                return
            capture = cache.capture(pending.ctx, key)
            if capture is not None:
                send = self._capturing(capture, send)
        if self.request.framing == BodyFraming.CHUNKED:
            receive = self._limited(receive)
        # (The timeout policy bounds the wait for the response head: UpstreamRequest carries it.)
        status, bytes_in, bytes_out = await self._forward(receive, send)
        if self.too_large:
            if not self.response_started:
                # The rest of the body is still coming: close after answering (as the fast
                # path does) instead of reading it to keep the connection.
                refused = body_too_large(None, self.max_body)
                close = [(b"connection", b"close")]
                await problems.send_problem(
                    raw_send, refused.problem, refused.detail, headers=close
                )
                if self.request.trace is not None:  # (recorded as the policy's refusal)
                    self.request.trace.problem = refused.problem
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
            self.request.trace,
        )

    def _editing(self, send: Send) -> Send:
        pending = self.pending

        async def edited(message: Message) -> None:
            if self.too_large and not self.response_started:
                return  # the backend's answer to a cut-off body is replaced by the 413
            if message["type"] == "http.response.start":
                self.response_started = True
                if pending is not None:
                    headers = pending.edit_response(list(message.get("headers", [])))
                    message = {**message, "headers": headers}
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

    async def _serve_cached(self, hit: CachedResponse, send: Send) -> None:
        headers, body = hit_answer(hit, self.request.method, time.time())
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._record(hit.status, 0, len(body))
        self.gateway.policing.record_bytes(self.pending, len(body))

    def _capturing(self, capture: CacheCapture, send: Send) -> Send:
        store = self.gateway.cache_store

        async def capturing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = capture.begin(message["status"], list(message.get("headers", [])))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                capture.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    await capture.finish(store)
            await send(message)

        return capturing
