"""OpenID Connect sign-in: authorization code flow with PKCE, ``state`` and ``nonce``.

authlib makes the PKCE challenge and the random values; joserfc (authlib's JOSE library)
verifies the ID token: signature against the provider's JWKS, ``iss``, ``aud`` (and ``azp``
when it names several audiences), ``exp``, ``iat`` and the ``nonce`` this browser was given.
The discovery document must name the configured issuer; every call to the provider has a total
deadline (a provider that trickles bytes cannot hold a sign-in); an unknown key id refetches
the JWKS at most once per ``JWKS_REFETCH_INTERVAL``. Every failure is an :class:`OidcError`
whose message is safe to show; nobody is signed in.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import (  # type: ignore[import-untyped]
    create_s256_code_challenge,
)
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from tollway.portal.claims import ClaimsError, discovery_issuer_fits, expected_issuer, identity_of
from tollway.portal.settings import OidcProvider
from tollway.services.identities import ExternalIdentity

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
METADATA_TTL = 3600.0
JWKS_REFETCH_INTERVAL = 60.0  # seconds between JWKS fetches caused by unknown key ids


class OidcError(Exception):
    """A sign-in that cannot complete; the message names what happened, without secrets."""


@dataclass(frozen=True)
class Pending:
    """What the browser's session remembers between the redirect and the callback."""

    provider: str
    state: str
    nonce: str
    verifier: str
    next_url: str

    def to_session(self) -> dict[str, str]:
        return dict(self.__dict__)

    @classmethod
    def from_session(cls, data: object) -> Pending | None:
        try:
            return cls(**data) if isinstance(data, dict) else None
        except TypeError:
            return None


class OidcClient:
    """One configured provider: discovery, redirect, code exchange, ID token checks."""

    def __init__(
        self,
        provider: OidcProvider,
        *,
        leeway: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.leeway = leeway
        self.clock = clock
        self._metadata: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    async def _fetch(self, method: str, url: str, **options: Any) -> httpx.Response:
        """One call to the provider, all of it (connect, headers, body) within ``timeout``."""
        try:
            with anyio.fail_after(self.provider.timeout):
                async with httpx.AsyncClient(timeout=self.provider.timeout) as http:
                    return await http.request(method, url, **options)
        except (httpx.HTTPError, TimeoutError):
            raise OidcError(f"Could not reach {self.provider.label} to sign in.") from None

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._fetch("GET", url)
        try:
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError):
            raise OidcError(f"Could not reach {self.provider.label} to sign in.") from None
        if not isinstance(data, dict):
            raise OidcError(f"{self.provider.label} sent an unreadable answer.")
        return data

    async def metadata(self) -> dict[str, Any]:
        if self._metadata and self.clock() - self._metadata[0] < METADATA_TTL:
            return self._metadata[1]
        url = f"{self.provider.issuer_url}/.well-known/openid-configuration"
        data = await self._get_json(url)
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(name), str):
                raise OidcError(f"{self.provider.label}'s discovery document lacks {name}.")
        if not discovery_issuer_fits(self.provider, data["issuer"]):
            # OpenID Connect Discovery 4.3: the issuer must be the one we asked.
            raise OidcError(
                f"{self.provider.label}'s discovery document names another issuer; "
                "the portal's administrator must check the provider settings."
            )
        self._metadata = (self.clock(), data)
        return data

    async def begin(self, redirect_uri: str, next_url: str) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to remember."""
        meta = await self.metadata()
        pending = Pending(
            self.provider.name, generate_token(32), generate_token(32), generate_token(64), next_url
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.provider.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.provider.scopes,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": create_s256_code_challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = meta["authorization_endpoint"]
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending

    async def finish(
        self, params: dict[str, str], pending: Pending, redirect_uri: str
    ) -> ExternalIdentity:
        """Check the callback, redeem the code and verify the ID token."""
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("The sign-in answer does not belong to this browser (state mismatch).")
        if "error" in params:
            detail = params.get("error_description") or params["error"]
            raise OidcError(f"{self.provider.label} refused the sign-in: {detail[:200]}")
        code = params.get("code")
        if not code:
            raise OidcError(f"{self.provider.label} sent no authorization code.")
        tokens = await self._redeem(code, pending, redirect_uri)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError(f"{self.provider.label} sent no ID token.")
        return identity_of(self.provider, await self._verify(id_token, pending.nonce))

    async def _redeem(self, code: str, pending: Pending, redirect_uri: str) -> dict[str, Any]:
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
            "client_id": self.provider.client_id,
        }
        secret = self.provider.client_secret.get_secret_value()
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth: httpx.BasicAuth | None = None
        if secret and "client_secret_basic" in methods:
            auth = httpx.BasicAuth(self.provider.client_id, secret)
        elif secret:
            form["client_secret"] = secret
        response = await self._fetch(
            "POST", meta["token_endpoint"], data=form, auth=auth or httpx.USE_CLIENT_DEFAULT
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            raise OidcError(f"{self.provider.label} did not accept the sign-in code.")
        return data

    async def _key_set(self, unknown_kid: bool) -> KeySet | None:
        """The provider's keys; refetched for an unknown key id, but not more than once a
        ``JWKS_REFETCH_INTERVAL`` (None then: a flood of bad tokens cannot make us hammer it)."""
        if self._keys is not None and not unknown_kid:
            return self._keys[1]
        if self._keys is not None and self.clock() - self._keys[0] < JWKS_REFETCH_INTERVAL:
            return None
        meta = await self.metadata()
        document = await self._get_json(meta["jwks_uri"])
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError):
            raise OidcError(f"{self.provider.label}'s signing keys are unreadable.") from None
        self._keys = (self.clock(), keys)
        return keys

    async def _decode(self, id_token: str) -> jwt.Token:
        unknown_kid = False
        while (keys := await self._key_set(unknown_kid)) is not None:
            try:
                return jwt.decode(id_token, keys, algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                if unknown_kid:
                    break
                unknown_kid = True  # a key rotated since we fetched the JWKS: fetch once more
            except (JoseError, ValueError):
                break
        raise OidcError("The ID token's signature is not valid.")

    async def _verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        meta = await self.metadata()
        token = await self._decode(id_token)
        try:
            issuer = expected_issuer(self.provider, str(meta["issuer"]), token.claims)
        except ClaimsError as exc:
            raise OidcError(str(exc)) from None
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self.clock()),
            leeway=self.leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": self.provider.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(token.claims)
        except JoseError as exc:
            raise OidcError(f"The ID token was not accepted ({_claim_problem(exc)}).") from None
        self._check_azp(token.claims)
        return dict(token.claims)

    def _check_azp(self, claims: dict[str, Any]) -> None:
        # OpenID Connect Core 3.1.3.7 (4, 5): a token for several audiences must name us as
        # its authorized party; an azp that names another client is never ours.
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.provider.client_id:
            raise OidcError("The ID token was not accepted (it was issued to another client).")


def _claim_problem(exc: JoseError) -> str:
    text = str(exc)
    if "exp" in text or "expired" in text:
        return "it has expired"
    if "nonce" in text:
        return "its nonce does not match this sign-in"
    return text[:120]
