"""validate-jwt against a real JWKS endpoint on 127.0.0.1, with key rotation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from tollway.samples.echo import app as echo_app
from tollway.settings import Settings
from tollway.site.compose import create_gateway
from tollway.types import Receive, Scope, Send

from ..gateway.conftest import SECRET, apply
from ..servers import serve_gateway, serve_in_thread
from .conftest import config, running

pytestmark = pytest.mark.anyio


class Issuer:
    """Signs tokens and publishes its public keys as a JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.rotate("k1")

    def rotate(self, kid: str) -> None:
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}

    def token(self, **claims: Any) -> str:
        kid, key = next(iter(self.keys.items()))
        body = {"iss": "https://issuer.test", "aud": "tollway-api", "sub": "dev-42"}
        body["exp"] = int(time.time()) + 300
        body.update(claims)
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        body = json.dumps({"keys": keys}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def issuer() -> Iterator[tuple[Issuer, str]]:
    found = Issuer()
    with serve_in_thread(found) as base:
        yield found, f"{base}/jwks.json"


def jwt_config(jwks: str) -> dict[str, Any]:
    policy = {
        "type": "validate-jwt",
        "issuer": "https://issuer.test",
        "jwks_uri": jwks,
        "audiences": ["tollway-api"],
        "required_claims": ["sub"],
        "claims_to_headers": {"sub": "X-User-Id"},
        "min_refetch_seconds": 0,
    }
    return config([], open_policies=[policy])


async def test_valid_tokens_pass_and_claims_reach_the_backend(
    engine: Engine, database_url: str, issuer: tuple[Issuer, str]
) -> None:
    found, jwks = issuer
    async with running(engine, database_url, jwt_config(jwks)) as (_, client):
        ok = await client.get(
            "/open/x",
            headers={"Authorization": f"Bearer {found.token()}", "X-User-Id": "spoofed"},
        )
        found.rotate("k2")  # the issuer rotates: new tokens carry a kid the gateway never saw
        rotated = await client.get("/open/x", headers={"Authorization": f"Bearer {found.token()}"})
    assert ok.status_code == 200
    assert dict(ok.json()["headers"])["x-user-id"] == "dev-42"
    assert rotated.status_code == 200


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: None, "bearer token is required"),
        (lambda i: "not-a-jwt", "not a well-formed JWT"),
        (lambda i: i.token(exp=int(time.time()) - 3600), "expired"),
        (lambda i: i.token(aud="someone-else"), "audience"),
        (lambda i: i.token(iss="https://evil.test"), "another issuer"),
        (lambda i: jwt.encode({"sub": "x", "exp": 2**33}, "k" * 32, "HS256"), "signature"),
    ],
)
async def test_bad_tokens_get_401_with_a_reason(
    engine: Engine, database_url: str, issuer: tuple[Issuer, str], make: Any, reason: str
) -> None:
    found, jwks = issuer
    token = make(found)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with running(engine, database_url, jwt_config(jwks)) as (_, client):
        response = await client.get("/open/x", headers=headers)
    assert response.status_code == 401
    assert response.json()["type"] == "/-/problems/invalid-token"
    assert reason in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_validate_jwt_over_sockets_on_both_transports(
    sqlite_engine: Engine,
    sqlite_url: str,
    issuer: tuple[Issuer, str],
    transport: str,
    asgi_api_calls: list[str],
) -> None:
    """The same answers on the fast path (validate-jwt runs there) and the ASGI path."""
    found, jwks = issuer
    cfg = jwt_config(jwks)
    with serve_in_thread(echo_app) as echo:
        cfg["backends"] = {"echo": {"url": echo}}
        apply(sqlite_engine, cfg)
        gateway = create_gateway(
            Settings(database_url=sqlite_url, secret_key=SECRET),  # type: ignore[arg-type]
            engine=sqlite_engine,
        )
        with serve_gateway(gateway, transport) as base:
            ok = httpx.get(
                f"{base}/open/x",
                headers={"Authorization": f"Bearer {found.token()}", "X-User-Id": "spoofed"},
            )
            refused = httpx.get(
                f"{base}/open/x", headers={"Authorization": f"Bearer {found.token(aud='other')}"}
            )
    assert ok.status_code == 200 and dict(ok.json()["headers"])["x-user-id"] == "dev-42"
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # validate-jwt no longer hands its API's calls to the ASGI transport
    assert asgi_api_calls == ([] if transport == "fast" else ["/open/x"] * 2)


def test_invalid_tokens_do_not_spend_the_rate_limit(
    sqlite_engine: Engine, sqlite_url: str, issuer: tuple[Issuer, str], transport: str
) -> None:
    """validate-jwt comes before rate limits in the phase order, on memory counters too."""
    found, jwks = issuer
    cfg = jwt_config(jwks)
    cfg["apis"]["open"]["policies"].append(
        {"type": "rate-limit", "calls": 2, "period": 60, "key": "ip"}
    )
    with serve_in_thread(echo_app) as echo:
        cfg["backends"] = {"echo": {"url": echo}}
        apply(sqlite_engine, cfg)
        gateway = create_gateway(
            Settings(database_url=sqlite_url, secret_key=SECRET),  # type: ignore[arg-type]
            engine=sqlite_engine,
        )
        with serve_gateway(gateway, transport) as base:
            bad = {"Authorization": f"Bearer {found.token(aud='other')}"}
            refused = [httpx.get(f"{base}/open/x", headers=bad).status_code for _ in range(3)]
            good = {"Authorization": f"Bearer {found.token()}"}
            admitted = [httpx.get(f"{base}/open/x", headers=good).status_code for _ in range(3)]
    assert refused == [401, 401, 401]
    assert admitted == [200, 200, 429]
