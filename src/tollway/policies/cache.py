"""cache: keep GET/HEAD responses for ``ttl`` seconds and answer repeats from the cache.

Keyed by method + the client's ``Host`` + path + the chosen query parameters (``vary_by_query``;
all of them with ``["*"]``) + chosen request headers (``vary_by_headers``) + optionally the
subscription, and per the values of the request headers a response names in ``Vary``.

Shared caching must never hand one user's answer to another (RFC 9111 §3, §3.5), so by default:
requests carrying ``Authorization`` or ``Cookie`` are neither answered from nor stored in the
cache; responses with ``Set-Cookie``, ``Cache-Control: no-store``/``no-cache``/``private`` or
``Vary: *`` are not stored, nor Server-Sent Events (``Content-Type: text/event-stream``: a live
stream, not a document to replay). ``allow_private_response_caching`` (APIM's
``allow-private-response-caching``) lets credentialed requests and ``private`` responses in,
each entry then keyed by the request's credentials, so it is only ever replayed to a request
carrying the same ones. Only complete 200 responses up to ``max_entry_bytes`` are stored.
Responses carry ``X-Cache: HIT`` or ``MISS`` and, for hits, ``Age``. In memory (LRU, bounded by
``TOLLWAY_CACHE_BYTES``) or shared in Redis.

Both transports run it the same way: :meth:`CachePolicy.key`, then :meth:`CachePolicy.lookup`;
a hit is answered with :func:`hit_answer`, a GET miss streams to the client through a
:class:`CacheCapture`, which stores it when it is complete.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qsl

from pydantic import Field

from tollway.policies.base import PolicyConfig, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.stores.base import CachedResponse, CacheStore, StoreUnavailable
from tollway.types import Headers

CREDENTIALS = (b"authorization", b"cookie")
NEVER_STORED = frozenset({b"no-store", b"no-cache"})
EVENT_STREAM = b"text/event-stream"  # Server-Sent Events: never stored
VARY_MARKER = 0  # status of the entry that records which request headers a response varies on
NOT_STORED = frozenset({b"content-length", b"transfer-encoding", b"x-cache", b"age"})


class CacheConfig(PolicyConfig):
    ttl: float = Field(gt=0, le=31536000, description="Seconds a response is served from cache.")
    vary_by_query: list[str] = Field(
        default_factory=lambda: ["*"], description="Query parameters in the key ('*': all)."
    )
    vary_by_headers: list[str] = Field(default_factory=list, description="Headers in the key.")
    vary_by_subscription: bool = Field(False, description="Separate entries per subscription.")
    max_entry_bytes: int = Field(1024 * 1024, ge=1, description="Largest body cached.")
    allow_private_response_caching: bool = Field(
        False,
        description="Also cache answers to requests with Authorization or Cookie, and "
        "Cache-Control: private responses, keyed by the request's credentials.",
    )


def _directives(value: bytes) -> set[bytes]:
    return {d.strip().split(b"=")[0] for d in value.lower().split(b",")}


def response_vary(status: int, headers: Headers, *, allow_private: bool) -> list[bytes] | None:
    """The request headers a storable response varies on (lower-case); None: do not store."""
    if status != 200:
        return None
    vary: list[bytes] = []
    for name, value in headers:
        if name == b"set-cookie":
            return None
        if name == b"cache-control":
            directives = _directives(value)
            if directives & NEVER_STORED or (b"private" in directives and not allow_private):
                return None
        elif name == b"vary":
            vary += [v.strip().lower() for v in value.split(b",") if v.strip()]
        elif name == b"content-type" and value.split(b";")[0].strip().lower() == EVENT_STREAM:
            return None
    return None if b"*" in vary else sorted(set(vary))


def vary_marker(names: list[bytes], stored_at: float) -> CachedResponse:
    """The entry under the base key that says which request headers pick the variant."""
    return CachedResponse(VARY_MARKER, [(b"vary", b", ".join(names))], b"", stored_at)


def marker_names(entry: CachedResponse) -> list[bytes] | None:
    """The varied request headers if ``entry`` is a marker, else None (a real response)."""
    if entry.status != VARY_MARKER:
        return None
    return [v.strip() for _, value in entry.headers for v in value.split(b",") if v.strip()]


class CachePolicy:
    kind = "cache"
    phase = Phase.CACHE
    slot = "cache"
    merge = Merge.MOST_SPECIFIC

    def __init__(self, config: CacheConfig, context: BuildContext) -> None:
        self.ttl = config.ttl
        self.all_query = "*" in config.vary_by_query
        self.query = set(config.vary_by_query)
        self.headers = [h.lower().encode() for h in config.vary_by_headers]
        self.per_subscription = config.vary_by_subscription
        self.max_entry_bytes = config.max_entry_bytes
        self.allow_private = config.allow_private_response_caching
        self.uid = context.uid

    def key(self, ctx: RequestContext, query: bytes) -> str | None:
        """The base key of this request, or None when the cache must not be used for it."""
        ctx.cache = "bypass"  # (what the call's metrics count: "miss" or "hit" once looked up)
        if ctx.method not in ("GET", "HEAD"):
            return None
        credentials = [ctx.header(name) for name in CREDENTIALS]
        if not self.allow_private and any(value is not None for value in credentials):
            return None
        ctx.cache = "miss"
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        kept = sorted(p for p in pairs if self.all_query or p[0] in self.query)
        host = (ctx.header(b"host") or b"").lower()
        # HEAD is answered from the GET entry (same headers, no body); only GETs are stored.
        parts = ["GET", repr(host), ctx.path.decode("latin-1"), repr(kept)]
        parts += [repr(ctx.header(h)) for h in self.headers]
        if self.per_subscription:
            parts.append(str(ctx.grant.subscription_id if ctx.grant else 0))
        parts += [repr(value) for value in credentials]  # (only ever set when allowed)
        return self._digest(parts)

    def variant_key(self, key: str, names: list[bytes], ctx: RequestContext) -> str:
        """The key of the variant that answers ``ctx`` for a response that varies on ``names``."""
        return self._digest([key, *(repr(ctx.header(name)) for name in names)])

    def vary(self, status: int, headers: Headers) -> list[bytes] | None:
        """What :func:`response_vary` says for this policy's options."""
        return response_vary(status, headers, allow_private=self.allow_private)

    async def lookup(
        self, store: CacheStore, ctx: RequestContext, key: str
    ) -> CachedResponse | None:
        """The response that answers ``ctx``, following a Vary marker to its variant; None on
        a miss or when the store is down (the request then goes to the backend)."""
        try:
            hit = await store.get(key)
            names = None if hit is None else marker_names(hit)
            if names is not None:
                hit = await store.get(self.variant_key(key, names, ctx))
        except StoreUnavailable:
            return None
        if hit is None or marker_names(hit) is not None:
            return None
        ctx.cache = "hit"
        return hit

    def capture(self, ctx: RequestContext, key: str) -> CacheCapture | None:
        """What keeps a miss's response to store it; None for a HEAD (only GETs are stored)."""
        return CacheCapture(self, ctx, key) if ctx.method == "GET" else None

    def _digest(self, parts: list[str]) -> str:
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return f"{self.uid}:{digest}"


def hit_answer(hit: CachedResponse, method: str, now: float) -> tuple[Headers, bytes]:
    """The headers and body that answer a request from ``hit``: ``Content-Length`` of the
    stored body (for HEAD too, RFC 9110 §9.3.2), ``Age``, ``X-Cache: HIT``; HEAD has no body."""
    headers = [
        *hit.headers,
        (b"content-length", str(len(hit.body)).encode()),
        (b"age", str(max(0, int(now - hit.stored_at))).encode()),
        (b"x-cache", b"HIT"),
    ]
    return headers, b"" if method == "HEAD" else hit.body


class CacheCapture:
    """A GET miss on its way to the client: marked ``X-Cache: MISS`` and kept, while it stays
    storable and within ``max_entry_bytes``, to be stored once it is complete."""

    __slots__ = ("ctx", "headers", "key", "parts", "policy", "size", "status", "vary")

    def __init__(self, policy: CachePolicy, ctx: RequestContext, key: str) -> None:
        self.policy = policy
        self.ctx = ctx
        self.key = key
        self.status = 0
        self.headers: Headers = []
        self.vary: list[bytes] | None = None  # None: not to be stored
        self.parts: list[bytes] = []
        self.size = 0

    def begin(self, status: int, headers: Headers) -> Headers:
        """Take the backend's response head; returns the headers to send on."""
        self.status, self.headers = status, headers
        self.vary = self.policy.vary(status, headers)
        return [*headers, (b"x-cache", b"MISS")]

    @property
    def storable(self) -> bool:
        return self.vary is not None

    def feed(self, data: bytes) -> None:
        """Keep a piece of the body, or give up on storing once it passes the bound."""
        if self.vary is None:
            return
        self.size += len(data)
        if self.size > self.policy.max_entry_bytes:
            self.vary, self.parts = None, []
        else:
            self.parts.append(data)

    async def finish(self, store: CacheStore) -> None:
        """Store the complete response (and a Vary marker naming what picks its variant)."""
        names = self.vary
        if names is None:
            return
        policy, key, now = self.policy, self.key, time.time()
        headers = [(n, v) for n, v in self.headers if n not in NOT_STORED]
        entry = CachedResponse(self.status, headers, b"".join(self.parts), now)
        self.parts = []
        try:
            if names:  # one marker naming the varied headers, one entry per variant
                await store.put(key, vary_marker(names, now), policy.ttl)
                key = policy.variant_key(key, names, self.ctx)
            await store.put(key, entry, policy.ttl)
        except StoreUnavailable:
            return


register("cache", CacheConfig, CachePolicy)
