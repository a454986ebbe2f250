"""A small OpenID Connect provider on loopback that issues whatever ID tokens a test needs.

It speaks the real protocol (discovery, authorization endpoint, token endpoint with client
authentication and PKCE, JWKS) and signs with a test key, so the portal under test cannot tell
it from a real provider; the test decides the claims. It plays a generic issuer at its root and
Microsoft Entra ID under ``/<tenant>/v2.0`` (``common``/``organizations`` publish the
``{tenantid}`` issuer, as Microsoft does).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from tests.servers import serve_in_thread

CLIENT_ID = "tollway-portal"
CLIENT_SECRET = "crafted-client-secret"
MULTI_TENANT = ("common", "organizations")


def signing_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


@dataclass
class Account:
    """Someone who can sign in; ``claims`` go into their ID token as they are."""

    sub: str
    claims: dict[str, Any]
    tenant: str = ""  # Entra: the tenant id the token's issuer and tid name


@dataclass
class TokenProvider:
    """The provider's state; tests change it between sign-ins."""

    base: str = ""
    accounts: dict[str, Account] = field(default_factory=dict)
    key: ECKey = field(default_factory=lambda: signing_key("k1"))
    published: list[ECKey] = field(default_factory=list)  # defaults to [key]
    extra_claims: dict[str, Any] = field(default_factory=dict)  # None removes a claim
    discovery_issuer: str | None = None  # lie about the issuer
    trickle_seconds: float = 0.0  # send the discovery document a byte at a time
    next_login: str | None = None  # sign this account in without showing the chooser page
    jwks_fetches: int = 0
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def issuer(self, tenant: str) -> str:
        return f"{self.base}/{tenant}/v2.0" if tenant else self.base

    def _id_token(self, grant: dict[str, str]) -> str:
        account = self.accounts[grant["login"]]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer(account.tenant),
            "aud": CLIENT_ID,
            "sub": account.sub,
            "iat": now,
            "exp": now + 600,
            "nonce": grant["nonce"],
            **({"tid": account.tenant} if account.tenant else {}),
            **account.claims,
        }
        claims.update(self.extra_claims)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        tenant = request.path_params.get("tenant", "")
        issuer = self.issuer("{tenantid}" if tenant in MULTI_TENANT else tenant)
        document = json.dumps(
            {
                "issuer": self.discovery_issuer or issuer,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "jwks_uri": f"{self.base}/jwks",
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["ES256"],
            }
        ).encode()
        if not self.trickle_seconds:
            return Response(document, media_type="application/json")
        return StreamingResponse(self._trickle(document), media_type="application/json")

    async def _trickle(self, document: bytes) -> AsyncIterator[bytes]:
        pause = self.trickle_seconds / len(document)
        for byte in document:
            yield bytes([byte])
            await asyncio.sleep(pause)

    async def authorize(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params = {name: str(value) for name, value in form.items()}
        elif self.next_login:
            params["login"] = self.next_login
        if "login" not in params:
            return self._chooser(params)
        code = secrets.token_urlsafe(16)
        self.codes[code] = params
        query = urlencode({"code": code, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=303)

    def _chooser(self, params: dict[str, str]) -> HTMLResponse:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        buttons = "".join(
            f'<button name="login" value="{html.escape(name)}">{html.escape(name)}</button>'
            for name in self.accounts
        )
        return HTMLResponse(
            f"<!doctype html><title>Pick an account</title><h1>Pick an account</h1>"
            f'<form method="post" action="/authorize">{hidden}{buttons}</form>'
        )

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form.get("code", "")), None)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if grant is None or request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if challenge.rstrip(b"=").decode() != grant.get("code_challenge"):
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        if form.get("redirect_uri") != grant.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "id_token": self._id_token(grant)}
        )

    async def jwks(self, request: Request) -> Response:
        self.jwks_fetches += 1
        keys = self.published or [self.key]
        return JSONResponse({"keys": [key.as_dict(private=False) for key in keys]})


@contextmanager
def token_provider(accounts: dict[str, Account]) -> Iterator[TokenProvider]:
    """Serve a provider with ``accounts`` on 127.0.0.1; stop it after."""
    provider = TokenProvider(accounts=accounts)
    with serve_in_thread(provider.app(), lifespan="off") as base:
        provider.base = base
        yield provider
