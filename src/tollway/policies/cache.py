"""cache: keep GET/HEAD responses for ``ttl`` seconds and answer repeats from the cache.

Keyed by method + path + the chosen query parameters (``vary_by_query``; all of them with
``["*"]``) + chosen request headers (``vary_by_headers``) + optionally the subscription.
Only complete 200 responses up to ``max_entry_bytes`` are stored, never ones with
``Set-Cookie`` or ``Cache-Control: no-store``/``private``. Responses carry ``X-Cache: HIT`` or
``MISS`` and, for hits, ``Age``. In memory (LRU, bounded by ``TOLLWAY_CACHE_BYTES``) or shared
in Redis.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl

from pydantic import Field

from tollway.policies.base import PolicyConfig, RequestContext
from tollway.policies.registry import BuildContext, register
from tollway.types import Headers


class CacheConfig(PolicyConfig):
    ttl: float = Field(gt=0, le=31536000, description="Seconds a response is served from cache.")
    vary_by_query: list[str] = Field(
        default_factory=lambda: ["*"], description="Query parameters in the key ('*': all)."
    )
    vary_by_headers: list[str] = Field(default_factory=list, description="Headers in the key.")
    vary_by_subscription: bool = Field(False, description="Separate entries per subscription.")
    max_entry_bytes: int = Field(1024 * 1024, ge=1, description="Largest body cached.")


def storable(status: int, headers: Headers) -> bool:
    if status != 200:
        return False
    for name, value in headers:
        if name == b"set-cookie":
            return False
        if name == b"cache-control":
            directives = {d.strip().split(b"=")[0] for d in value.lower().split(b",")}
            if directives & {b"no-store", b"private", b"no-cache"}:
                return False
    return True


class CachePolicy:
    kind = "cache"

    def __init__(self, config: CacheConfig, context: BuildContext) -> None:
        self.ttl = config.ttl
        self.all_query = "*" in config.vary_by_query
        self.query = set(config.vary_by_query)
        self.headers = [h.lower().encode() for h in config.vary_by_headers]
        self.per_subscription = config.vary_by_subscription
        self.max_entry_bytes = config.max_entry_bytes
        self.uid = context.uid

    def key(self, ctx: RequestContext, query: bytes) -> str | None:
        if ctx.method not in ("GET", "HEAD"):
            return None
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        kept = sorted(p for p in pairs if self.all_query or p[0] in self.query)
        # HEAD is answered from the GET entry (same headers, no body); only GETs are stored.
        parts = ["GET", ctx.path.decode("latin-1"), repr(kept)]
        parts += [repr(ctx.header(h)) for h in self.headers]
        if self.per_subscription:
            parts.append(str(ctx.grant.subscription_id if ctx.grant else 0))
        digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
        return f"{self.uid}:{digest}"


register("cache", CacheConfig, CachePolicy)
