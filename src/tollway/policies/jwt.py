"""validate-jwt: require a bearer JWT signed by the issuer's keys (JWKS over HTTP, cached).

Checks signature (RS*/ES*/PS*/EdDSA), ``iss``, ``aud``, ``exp``/``nbf`` (with ``leeway``) and
``required_claims``. Unknown ``kid``: the JWKS is fetched again (at most every
``min_refetch_seconds``), so key rotation at the issuer just works. Produces: 401
``/-/problems/invalid-token`` with ``WWW-Authenticate: Bearer error="invalid_token"``.
``claims_to_headers`` forwards claims to the backend as headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
from pydantic import Field

from tollway.policies.base import PolicyConfig, Reject, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.problems import INVALID_TOKEN
from tollway.types import Headers

logger = logging.getLogger("tollway.policies")


class JwtConfig(PolicyConfig):
    issuer: str = Field(description="Expected iss; also where discovery starts.")
    jwks_uri: str | None = Field(None, description="JWKS URL (default: from OIDC discovery).")
    audiences: list[str] = Field(default_factory=list, description="Accepted aud values.")
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"],
        description="Accepted signing algorithms (never 'none' or HMAC with public keys).",
    )
    required_claims: list[str] = Field(default_factory=list, description="Claims that must exist.")
    claims_to_headers: dict[str, str] = Field(
        default_factory=dict, description="claim -> request header sent to the backend."
    )
    leeway: float = Field(30, ge=0, le=600, description="Clock skew allowed, seconds.")
    cache_seconds: float = Field(600, ge=1, description="How long a fetched JWKS is used.")
    min_refetch_seconds: float = Field(
        30, ge=0, description="Least time between fetches caused by unknown key ids."
    )


class JwksCache:
    """The issuer's keys, fetched when missing, stale, or asked for an unknown key id."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = float("-inf")  # never fetched (monotonic time may be small after boot)
        self.lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        fresh = time.monotonic() - self.fetched_at < self.config.cache_seconds
        if fresh and (kid in self.keys or (kid is None and len(self.keys) == 1)):
            return self._pick(kid)
        if not fresh or time.monotonic() - self.fetched_at >= self.config.min_refetch_seconds:
            async with self.lock:
                await self._fetch()
        return self._pick(kid)

    def _pick(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                uri = self.config.jwks_uri
                if uri is None:
                    base = self.config.issuer.rstrip("/")
                    found = await client.get(f"{base}/.well-known/openid-configuration")
                    uri = str(found.raise_for_status().json()["jwks_uri"])
                reply = (await client.get(uri)).raise_for_status().json()
            keys = jwt.PyJWKSet.from_dict(reply).keys
        except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWTError) as exc:
            logger.warning("validate-jwt: cannot fetch keys for %s: %s", self.config.issuer, exc)
            # Try again after min_refetch_seconds, not on every request.
            self.fetched_at = time.monotonic() - self.config.cache_seconds
            self.fetched_at += self.config.min_refetch_seconds
            return
        self.keys = {str(key.key_id): key for key in keys if key.key_id} or {
            str(i): key for i, key in enumerate(keys)
        }
        self.fetched_at = time.monotonic()


def _refuse(description: str) -> Reject:
    challenge = f'Bearer error="invalid_token", error_description="{description}"'
    return Reject(INVALID_TOKEN, description, headers=[(b"www-authenticate", challenge.encode())])


class JwtPolicy:
    kind = "validate-jwt"
    phase = Phase.AUTHENTICATE
    slot = "jwts"
    merge = Merge.EVERY

    def __init__(self, config: JwtConfig, context: BuildContext) -> None:
        self.config = config
        self.jwks = JwksCache(config)
        self.claim_headers = [(c, h.lower().encode()) for c, h in config.claims_to_headers.items()]

    async def authenticate(self, ctx: RequestContext) -> Reject | None:
        value = ctx.header(b"authorization")
        if value is None or value[:7].lower() != b"bearer ":
            return _refuse("a bearer token is required in the Authorization header")
        token = value[7:].strip().decode("latin-1")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return _refuse("the token is not a well-formed JWT")
        key = await self.jwks.key_for(kid)
        if key is None:
            return _refuse("the token was not signed by a key of the issuer")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=self.config.algorithms,
                audience=self.config.audiences or None,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={
                    "require": ["exp", *self.config.required_claims],
                    "verify_aud": bool(self.config.audiences),
                },
            )
        except jwt.ExpiredSignatureError:
            return _refuse("the token has expired")
        except jwt.PyJWTError as exc:
            return _refuse(_describe(exc))
        ctx.claims = claims
        return None

    def edit_request(self, headers: Headers, ctx: RequestContext) -> Headers:
        """``claims_to_headers``: the token's claims as request headers for the backend."""
        if not self.claim_headers:
            return headers
        claims = ctx.claims
        drop = {header for _, header in self.claim_headers}
        out = [h for h in headers if h[0] not in drop]
        for claim, header in self.claim_headers:
            value = (claims or {}).get(claim)
            if value is not None:
                text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
                out.append((header, text.replace("\r", " ").replace("\n", " ").encode()))
        return out


def _describe(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is not meant for this API (audience)"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token comes from another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the token lacks the required claim {exc.claim!r}"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    return "the token's signature or claims are invalid"


register("validate-jwt", JwtConfig, JwtPolicy)
