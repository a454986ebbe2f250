"""cors: Cross-Origin Resource Sharing, answered by the gateway.

Preflight requests (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) are
answered with 204 without a key and without reaching the backend; a preflight from an origin
that is not allowed gets 403 ``/-/problems/cors-forbidden``. Actual responses to allowed origins
carry ``Access-Control-Allow-Origin`` (and ``-Credentials``, ``-Expose-Headers``) plus
``Vary: Origin``. Origins: exact (``https://app.example.com``), ``*``, or patterns with one
``*`` label (``https://*.example.com``).
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from tollway.policies.base import PolicyConfig, Reject, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.problems import CORS_FORBIDDEN
from tollway.types import Headers


class CorsConfig(PolicyConfig):
    origins: list[str] = Field(default_factory=lambda: ["*"], description="Allowed origins.")
    methods: list[str] = Field(
        default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        description="Allowed methods ('*' for any).",
    )
    headers: list[str] = Field(
        default_factory=lambda: ["*"], description="Allowed request headers ('*' for any)."
    )
    expose_headers: list[str] = Field(default_factory=list, description="Headers JS may read.")
    credentials: bool = Field(False, description="Allow cookies/Authorization cross-origin.")
    max_age: int = Field(600, ge=0, le=86400, description="Seconds browsers may cache preflight.")

    @model_validator(mode="after")
    def _origins(self) -> CorsConfig:
        for origin in self.origins:
            if origin != "*" and not re.match(r"^https?://[A-Za-z0-9.*:-]+$", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or '*')")
        return self


def _pattern(origin: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(origin).replace(r"\*", r"[A-Za-z0-9-]+") + "$")


class CorsPolicy:
    kind = "cors"
    phase = Phase.PREFLIGHT
    slot = "cors"
    merge = Merge.MOST_SPECIFIC

    def __init__(self, config: CorsConfig, context: BuildContext) -> None:
        self.any_origin = "*" in config.origins
        self.exact = {o for o in config.origins if "*" not in o}
        self.patterns = [_pattern(o) for o in config.origins if "*" in o and o != "*"]
        self.methods = {m.upper() for m in config.methods}
        self.any_header = "*" in config.headers
        self.headers = ", ".join(config.headers).encode()
        self.expose = ", ".join(config.expose_headers).encode()
        self.credentials = config.credentials
        self.max_age = str(config.max_age).encode()

    def allows(self, origin: str) -> bool:
        return (
            self.any_origin or origin in self.exact or any(p.match(origin) for p in self.patterns)
        )

    def _origin_headers(self, origin: bytes) -> Headers:
        wildcard = self.any_origin and not self.credentials
        out: Headers = [(b"access-control-allow-origin", b"*" if wildcard else origin)]
        if not wildcard:
            out.append((b"vary", b"Origin"))
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def preflight(self, origin: bytes, method: bytes, requested: bytes | None) -> Headers | None:
        """Headers for a 204 preflight answer, or None if the origin/method is not allowed."""
        if not self.allows(origin.decode("latin-1")):
            return None
        if "*" not in self.methods and method.decode("latin-1").upper() not in self.methods:
            return None
        methods = b", ".join(m.encode() for m in sorted(self.methods))
        if "*" in self.methods:
            methods = method
        allowed_headers = (requested or b"") if self.any_header else self.headers
        out = self._origin_headers(origin)
        out += [
            (b"access-control-allow-methods", methods),
            (b"access-control-max-age", self.max_age),
        ]
        if allowed_headers:
            out.append((b"access-control-allow-headers", allowed_headers))
        return out

    def answer_preflight(self, ctx: RequestContext) -> Headers | Reject | None:
        """An ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``: the headers
        of the 204 answer, or 403 for an origin or method that is not allowed; None for any
        other request."""
        origin = ctx.header(b"origin")
        wanted = ctx.header(b"access-control-request-method")
        if ctx.method != "OPTIONS" or origin is None or wanted is None:
            return None
        requested = ctx.header(b"access-control-request-headers")
        allowed = self.preflight(origin, wanted, requested)
        return Reject(CORS_FORBIDDEN) if allowed is None else allowed

    def response_headers(self, request: Headers) -> Headers:
        """The CORS headers of an answer (the backend's or the gateway's) to ``request``."""
        origin = next((value for name, value in request if name == b"origin"), None)
        if origin is None or not self.allows(origin.decode("latin-1")):
            return []
        out = self._origin_headers(origin)
        if self.expose:
            out.append((b"access-control-expose-headers", self.expose))
        return out


register("cors", CorsConfig, CorsPolicy)
