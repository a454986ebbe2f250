"""The ASGI transport's side of an API call: ASGI messages in and out of the exchange core.

Takes the calls the fast transport does not (in-process backends, HTTP/1.0, upgrades, pipelined
requests, ``TOLLWAY_FAST_PATH=false``). Every decision is the core's
(:class:`~tollway.gateway.exchange.core.ApiExchange`); this only passes messages: the backend's
``send`` goes through :meth:`AsgiExchange.client_head` / ``body_out`` when the chain edits or
keeps the response, and a chunked request body through ``body_in`` (the streamed size limit).
With no policy and a body of known length the backend's messages go straight to the client.
"""

from __future__ import annotations

from tollway.gateway.exchange.core import Answer, ApiExchange
from tollway.gateway.upstream.backends import (
    CLIENT_CLOSED,
    BodyFraming,
    ResponseAborted,
    UpstreamRequest,
)
from tollway.gateway.upstream.client import UpstreamError
from tollway.types import Message, Receive, Scope, Send

DISCONNECT: Message = {"type": "http.disconnect"}


async def send_answer(send: Send, answer: Answer, *, close: bool = False) -> None:
    """One of the gateway's own answers (``close``: the connection is not reused)."""
    status, headers, body = answer
    if close:
        headers = [*headers, (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AsgiExchange(ApiExchange):
    """One API call on the ASGI transport."""

    __slots__ = ()

    async def run(self, rest: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self.admit_request(
            rest, scope["headers"], scope.get("query_string", b""), scope.get("scheme", "http")
        )
        if answer is None and self.must_settle():
            answer = await self.settle()
        if answer is not None:
            await send_answer(send, answer)
            self.end()
            return
        request = self.upstream_request(rest, scope)
        chunked = self.framing == BodyFraming.CHUNKED
        if self.policy is None and not chunked:
            await self._forward(request, receive, send, send)  # nothing to edit, keep or count
        else:
            limited = self._limited(receive) if chunked else receive
            await self._forward(request, limited, self._policed(send), send)
        if self.too_large:
            answer = self.body_over_limit()
            if answer is not None:
                # The rest of the body is still coming: close after answering.
                await send_answer(send, answer, close=True)
        self.end()

    async def _forward(
        self, request: UpstreamRequest, receive: Receive, send: Send, client_send: Send
    ) -> None:
        try:
            result = await self.route.backend.forward(request, receive, send)
        except ResponseAborted as exc:  # the head already went out: the connection is cut
            self.bytes_out = exc.bytes_out
            if exc.status == CLIENT_CLOSED:
                self.client_left()
            else:
                self.status = exc.status
                self.cut_short(exc)
            return
        except UpstreamError as exc:
            if not self.too_large:
                await send_answer(client_send, self.failure_answer(exc))
            return
        if not self.too_large:
            # (the backend counts what it forwarded, whether or not the core saw the messages)
            self.status, self.bytes_in, self.bytes_out = (
                result.status,
                result.bytes_in,
                result.bytes_out,
            )

    def _policed(self, send: Send) -> Send:
        """The backend's messages through the core: response head, body accounting, cache."""

        async def policed(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if self.too_large:
                    return  # the backend's answer to a cut-off body is replaced by the 413
                headers = self.client_head(message["status"], message.get("headers", []))
                message = {**message, "headers": headers}
            elif kind == "http.response.body":
                if self.too_large and not self.status:
                    return
                self.body_out(message.get("body", b""))
                if not message.get("more_body", False):
                    store = self.store_response()
                    if store is not None:
                        await store
            await send(message)

        return policed

    def _limited(self, receive: Receive) -> Receive:
        """A streamed body counted by the core: past the limit the backend sees the client
        leave (and the client gets the 413)."""

        async def limited() -> Message:
            if self.too_large:
                return DISCONNECT
            message = await receive()
            if not self.body_in(len(message.get("body", b""))):
                return DISCONNECT
            return message

        return limited
