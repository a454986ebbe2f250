"""Turn the client's request into the backend's: one pass over the headers.

Removes hop-by-hop headers (RFC 9110 §7.6.1) and the subscription key, works out the client
address (believing ``X-Forwarded-For`` only from configured trusted proxies) and sets
``X-Forwarded-For/-Proto/-Host/-Prefix`` for the backend.

Message framing is never left to the client's header list: ``Transfer-Encoding`` is dropped
(the backend's ``chunked`` is written by ``HttpBackend.request_head``) and ``Content-Length`` (the
value the HTTP parser accepted and delivers exactly) is added back after the ``Connection``
tokens are applied, so a header named in the client's ``Connection`` can remove nothing that
frames or routes the request (issue 9: removing
``Content-Length`` while the body was still streamed let the body reach the backend as a second,
unchecked request). ``Forwarded`` and ``X-Real-IP`` are believed, and passed on, only from
trusted proxies, like ``X-Forwarded-*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from tollway.gateway.calltrace import CallTrace
from tollway.gateway.upstream.backends import HOP_BY_HOP, BodyFraming
from tollway.proxies import ProxyTrust  # (moved there; the portal shares it)
from tollway.types import Headers

__all__ = ["PreparedRequest", "ProxyTrust", "prepare_request", "take_query_key"]

_CAPTURED = frozenset(
    {
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"x-request-id",  # (replaced by the call's own: calltrace.py)
        b"traceparent",
    }
)
# Client-address headers other proxies use: passed on only when a trusted proxy sent them.
_PROXY_ONLY = frozenset({b"forwarded", b"x-real-ip"})


@dataclass(slots=True)
class PreparedRequest:
    headers: Headers
    host: bytes
    framing: int
    length: int  # Content-Length of the body (0 when absent or chunked)
    key: bytes | None
    client: str
    proto: str
    forwarded_for: bytes | None


def prepare_request(
    headers: Headers,
    peer: str,
    scheme: str,
    key_header: bytes,
    trust: ProxyTrust,
    trace: CallTrace,
) -> PreparedRequest:
    """Clean the client's headers for the backend and pick out what the gateway needs; start
    ``trace`` (request id, trace context) and pass it on."""
    out: Headers = []
    key: bytes | None = None
    framing = BodyFraming.NONE
    length: bytes | None = None
    captured: dict[bytes, bytes] = {}
    connection_tokens: bytes | None = None
    proxy_only: Headers = []
    for name, value in headers:
        if name == key_header:
            key = value.strip()
        elif name in HOP_BY_HOP:
            if name == b"transfer-encoding":
                framing = BodyFraming.CHUNKED
            elif name == b"connection":
                connection_tokens = value
        elif name in _CAPTURED:
            captured[name] = value
        elif name == b"content-length":
            # (The HTTP parser has already refused duplicates and non-digits.)
            length = value.strip()
            if length != b"0":
                framing = BodyFraming.LENGTH
        elif name in _PROXY_ONLY:
            proxy_only.append((name, value))
        elif name != b"expect":  # 100-continue is answered by our server, not forwarded
            out.append((name, value))
    if connection_tokens:
        listed = {t.strip().lower() for t in connection_tokens.split(b",")}
        out = [(n, v) for n, v in out if n not in listed]
    if length is not None and framing != BodyFraming.CHUNKED:
        out.append((b"content-length", length))  # after the Connection filter: always sent
    forwarded_for = captured.get(b"x-forwarded-for")
    trusted = bool(trust) and trust.trusts(peer)
    if trusted:
        out += proxy_only
    address = trust.client_address(peer, forwarded_for) if trusted else peer
    proto = trust.scheme(peer, scheme, captured.get(b"x-forwarded-proto")) if trusted else scheme
    chain = forwarded_for + b", " + peer.encode() if trusted and forwarded_for else peer.encode()
    host = captured.get(b"host", b"")
    out.append((b"x-forwarded-for", chain))
    out.append((b"x-forwarded-proto", proto.encode()))
    if host:
        out.append((b"x-forwarded-host", host))
    trace.begin(captured.get(b"x-request-id"), captured.get(b"traceparent"))
    out.append((b"x-request-id", trace.request_id))
    out.append((b"traceparent", trace.traceparent()))
    size = int(length) if length is not None and framing == BodyFraming.LENGTH else 0
    return PreparedRequest(out, host, framing, size, key, address, proto, forwarded_for)


def take_query_key(query: bytes, name: bytes) -> tuple[bytes | None, bytes]:
    """Remove the key parameter from a raw query string; return (key, remaining query)."""
    marker = name + b"="
    if marker not in query:
        return None, query
    key: bytes | None = None
    kept = []
    for part in query.split(b"&"):
        if part.startswith(marker):
            key = unquote_to_bytes(part[len(marker) :].replace(b"+", b" ")).strip()
        elif part:
            kept.append(part)
    return key, b"&".join(kept)
