"""Password hashing (pwdlib, Argon2) and signed, expiring access tokens (PyJWT)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

ALGORITHM = "HS256"


class Passwords:
    """Argon2 hashing with tunable cost (pwdlib's defaults unless the settings say otherwise)."""

    def __init__(self, memory_cost_kib: int = 65536, time_cost: int = 3) -> None:
        hasher = Argon2Hasher(memory_cost=memory_cost_kib, time_cost=time_cost)
        self._hash = PasswordHash((hasher,))

    @cached_property
    def _dummy(self) -> str:
        # Verified when the e-mail is unknown, so a wrong e-mail costs as long as a wrong password.
        return self._hash.hash("not-a-real-password")

    def hash(self, password: str) -> str:
        """An Argon2 hash of ``password``."""
        return self._hash.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        """Whether ``password`` matches ``hashed``; None (no such user) takes as long and fails."""
        if hashed is None:
            self._hash.verify(password, self._dummy)
            return False
        return self._hash.verify(password, hashed)


def create_access_token(
    subject: int, secret: str, expires_in: timedelta, now: datetime | None = None
) -> str:
    """A JWT naming user ``subject``, valid for ``expires_in`` from ``now``."""
    issued = now or datetime.now(UTC)
    claims = {"sub": str(subject), "iat": issued, "exp": issued + expires_in, "type": "access"}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_subject(token: str, secret: str) -> int | None:
    """The user id in a valid, unexpired access token; None for anything else."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return None
    subject = claims.get("sub")
    if claims.get("type") != "access" or not isinstance(subject, str) or not subject.isdigit():
        return None
    return int(subject)
