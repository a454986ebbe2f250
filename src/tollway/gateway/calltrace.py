"""What ties one call together: its request id, its W3C trace context, and the notes the
recording needs (the refusal, the upstream time, the policy context).

One :class:`CallTrace` per request, made by the transport. ``forwarding.prepare_request`` fills
it from the client's headers and gives the backend ``X-Request-ID`` and ``traceparent``; the
transports put ``X-Request-ID`` on the response; ``Gateway.record_exchange`` hands it to the
recording (metrics, access log, spans: ``gateway/recording/observe.py``).

- ``X-Request-ID``: the client's, when it is sane (1 to 128 characters of ``A-Z a-z 0-9 . _ - :
  + / = @``), else a new one (32 hex digits). Anything else the client sent is replaced, so a
  log line or backend never sees a forged multi-line id.
- ``traceparent`` (https://www.w3.org/TR/trace-context/): a valid one from the client is
  continued (same trace id and flags, the gateway's own span id as the backend's parent); an
  absent or invalid one starts a new sampled trace. ``tracestate`` passes unchanged.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from tollway.types import Headers, Message, Send

if TYPE_CHECKING:
    from tollway.policies.base import RequestContext
    from tollway.problems import ProblemType

MAX_REQUEST_ID = 128
_ID_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-:+/=@"
_HEX = b"0123456789abcdef"
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_bits = random.getrandbits  # (what OpenTelemetry's own id generator uses: ids need no secrecy)


def sane_request_id(value: bytes | None) -> bool:
    """A client's ``X-Request-ID`` that can be kept as it is."""
    return (
        value is not None
        and 0 < len(value) <= MAX_REQUEST_ID
        and not value.translate(None, _ID_CHARS)
    )


def _hex(value: bytes, size: int) -> bool:
    return len(value) == size and not value.translate(None, _HEX)


def parse_traceparent(value: bytes | None) -> tuple[bytes, bytes, bytes] | None:
    """(trace id, parent span id, flags) of a valid ``traceparent``, else None."""
    if value is None:
        return None
    value = value.strip()
    if len(value) < 55 or (len(value) > 55 and value[55:56] != b"-"):
        return None
    version, trace_id, parent_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    if not (_hex(version, 2) and _hex(trace_id, 32) and _hex(parent_id, 16) and _hex(flags, 2)):
        return None
    if version == b"ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    if version == b"00" and len(value) != 55:
        return None
    return trace_id, parent_id, flags


class CallTrace:
    """One call's correlation and the notes its recording needs."""

    __slots__ = (
        "ctx",
        "flags",
        "parent_id",
        "path",
        "problem",
        "request_id",
        "sent_at",
        "span_id",
        "trace_id",
        "upstream_s",
        "websocket",
    )

    def __init__(self, path: bytes = b"") -> None:
        self.path = path  # below the API's prefix for API calls; the whole path for pages
        self.request_id = b""  # empty until begin()
        self.trace_id = b""
        self.span_id = b""
        self.parent_id: bytes | None = None  # the client's span, when it sent a traceparent
        self.flags = b"01"
        self.problem: ProblemType | None = None  # the gateway's own answer, if it made one
        self.upstream_s = -1.0  # forward -> response head, when the call reached the backend
        self.sent_at = 0.0
        self.ctx: RequestContext | None = None  # the policies' view (grant, cache result)
        self.websocket: tuple[int, int, int] | None = None  # a session: close code, messages

    def begin(self, request_id: bytes | None, traceparent: bytes | None) -> None:
        """Take the client's ids (when sane) or make new ones."""
        parsed = parse_traceparent(traceparent) if traceparent is not None else None
        if parsed is None:
            self.trace_id = b"%032x" % _bits(128)
        else:
            self.trace_id, self.parent_id, self.flags = parsed
        self.span_id = b"%016x" % (_bits(64) or 1)
        if request_id is not None and sane_request_id(request_id):
            self.request_id = request_id
        else:
            self.request_id = self.trace_id if parsed is None else b"%032x" % _bits(128)

    def ensure(self, headers: Headers) -> bytes:
        """The request id, taken from ``headers`` now if ``begin`` has not run (a call refused
        before its headers were prepared, or one of Tollway's own pages)."""
        if not self.request_id:
            request_id = traceparent = None
            for name, value in headers:
                if name == b"x-request-id":
                    request_id = value
                elif name == b"traceparent":
                    traceparent = value
            self.begin(request_id, traceparent)
        return self.request_id

    def forwarded(self) -> None:
        """The request is going to the backend now."""
        self.sent_at = time.perf_counter()

    def responded(self) -> None:
        """The backend's response head is in."""
        self.upstream_s = time.perf_counter() - self.sent_at

    def traceparent(self) -> bytes:
        """The ``traceparent`` the backend receives: this call's span as its parent."""
        return b"00-" + self.trace_id + b"-" + self.span_id + b"-" + self.flags

    def stamping(self, send: Send, headers: Headers) -> Send:
        """``send`` with ``X-Request-ID`` added to the response head (the ASGI transport)."""

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = (b"x-request-id", self.ensure(headers))
                message = {**message, "headers": [*message.get("headers", ()), own]}
            await send(message)

        return stamped
