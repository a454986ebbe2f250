"""The bench's own token issuer: one RSA key, its JWKS, and one RS256 token signed with it.

bench/run.py makes one per run: the upstream serves the JWKS on loopback (its ``JWKS_PATH``), the
``tollway-jwt`` target's ``validate-jwt`` policy fetches it from there, and wrk sends the token
in ``Authorization: Bearer ...``. The key lives only in this process's memory.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://issuer.bench.invalid"
AUDIENCE = "tollway-bench"
ALGORITHM = "RS256"
TOKEN_LIFETIME = 24 * 3600  # any run ends long before; the policy allows 30 s of clock skew


@dataclass(frozen=True)
class BenchIssuer:
    """The JWKS document (JSON) and a token the ``tollway-jwt`` target accepts."""

    jwks: str
    token: str = field(repr=False)  # never printed: a bearer token is a credential


def create_issuer() -> BenchIssuer:
    """A fresh 2048-bit RSA key, its public JWKS, and a token for ``AUDIENCE`` signed with it."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = secrets.token_hex(8)
    public = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": kid, "alg": ALGORITHM, "use": "sig"}]}
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "bench",
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
    }
    token = jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid})
    return BenchIssuer(jwks=json.dumps(jwks), token=token)
