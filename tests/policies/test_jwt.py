"""validate-jwt against a real JWKS endpoint on 127.0.0.1, with key rotation, over real sockets on
both transports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from tollway.types import Receive, Scope, Send

from ..servers import serve_in_thread
from .conftest import Served, calls, config

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
    engine: Engine, database_url: str, issuer: tuple[Issuer, str], served: Served
) -> None:
    found, jwks = issuer
    async with served(engine, database_url, jwt_config(jwks)) as (_, client):
        ok = await client.get(
            "/open/x",
            headers={"Authorization": f"Bearer {found.token()}", "X-User-Id": "spoofed"},
        )
        found.rotate("k2")  # the issuer rotates: new tokens carry a kid the gateway never saw
        rotated = await client.get("/open/x", headers={"Authorization": f"Bearer {found.token()}"})
    assert ok.status_code == 200
    assert dict(ok.json()["headers"])["x-user-id"] == "dev-42"
    assert rotated.status_code == 200
    assert calls(engine) == {(0, "open", 2): 2}


async def test_set_header_edits_go_on_after_the_claims(
    engine: Engine, database_url: str, issuer: tuple[Issuer, str], served: Served
) -> None:
    """The phase order: validate-jwt's claim headers first, then set-header's edits."""
    found, jwks = issuer
    cfg = jwt_config(jwks)
    edits = {"type": "set-header", "request": {"X-User-Id": "fixed", "X-Team": "core"}}
    cfg["apis"]["open"]["policies"].append(edits)
    async with served(engine, database_url, cfg) as (_, client):
        ok = await client.get("/open/x", headers={"Authorization": f"Bearer {found.token()}"})
    assert ok.status_code == 200
    seen = dict(ok.json()["headers"])
    assert (seen["x-user-id"], seen["x-team"]) == ("fixed", "core")


BAD_TOKENS: list[tuple[Callable[[Issuer], str | None], str]] = [
    (lambda i: None, "bearer token is required"),
    (lambda i: "not-a-jwt", "not a well-formed JWT"),
    (lambda i: i.token(exp=int(time.time()) - 3600), "expired"),
    (lambda i: i.token(aud="someone-else"), "audience"),
    (lambda i: i.token(iss="https://evil.test"), "another issuer"),
    (lambda i: jwt.encode({"sub": "x", "exp": 2**33}, "k" * 32, "HS256"), "signature"),
]


async def test_bad_tokens_get_401_with_a_reason(
    engine: Engine, database_url: str, issuer: tuple[Issuer, str], served: Served
) -> None:
    found, jwks = issuer
    async with served(engine, database_url, jwt_config(jwks)) as (_, client):  # one for all six
        for make, reason in BAD_TOKENS:
            token = make(found)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.get("/open/x", headers=headers)
            assert response.status_code == 401, reason
            assert response.json()["type"] == "/-/problems/invalid-token"
            assert reason in response.json()["detail"]
            assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert calls(engine) == {(0, "open", 4): len(BAD_TOKENS)}


async def test_validate_jwt_runs_on_the_fast_path(
    sqlite_engine: Engine,
    sqlite_url: str,
    issuer: tuple[Issuer, str],
    served: Served,
    transport: str,
    asgi_api_calls: list[str],
) -> None:
    """The same answers on the fast path (validate-jwt runs there) and the ASGI path."""
    found, jwks = issuer
    async with served(sqlite_engine, sqlite_url, jwt_config(jwks)) as (_, client):
        ok = await client.get(
            "/open/x",
            headers={"Authorization": f"Bearer {found.token()}", "X-User-Id": "spoofed"},
        )
        refused = await client.get(
            "/open/x", headers={"Authorization": f"Bearer {found.token(aud='other')}"}
        )
    assert ok.status_code == 200 and dict(ok.json()["headers"])["x-user-id"] == "dev-42"
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    # validate-jwt no longer hands its API's calls to the ASGI transport
    assert asgi_api_calls == ([] if transport == "fast" else ["/open/x"] * 2)


async def test_invalid_tokens_do_not_spend_the_rate_limit(
    sqlite_engine: Engine, sqlite_url: str, issuer: tuple[Issuer, str], served: Served
) -> None:
    """validate-jwt comes before rate limits in the phase order, on memory counters too."""
    found, jwks = issuer
    cfg = jwt_config(jwks)
    cfg["apis"]["open"]["policies"].append(
        {"type": "rate-limit", "calls": 2, "period": 60, "key": "ip"}
    )
    async with served(sqlite_engine, sqlite_url, cfg) as (_, client):
        bad = {"Authorization": f"Bearer {found.token(aud='other')}"}
        refused = [(await client.get("/open/x", headers=bad)).status_code for _ in range(3)]
        good = {"Authorization": f"Bearer {found.token()}"}
        admitted = [(await client.get("/open/x", headers=good)).status_code for _ in range(3)]
    assert refused == [401, 401, 401]
    assert admitted == [200, 200, 429]
    assert calls(sqlite_engine) == {(0, "open", 4): 4, (0, "open", 2): 2}
