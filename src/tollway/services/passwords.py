"""Password hashing (argon2id via pwdlib) and the minimum strength rule for sign-up.

Strength: a length floor, a few house rules, and zxcvbn's estimate against the lists it ships
(about 30,000 passwords most common in breaches, English words, names, keyboard patterns),
checked offline: NIST SP 800-63B's "compare against breached and common passwords".
"""

from __future__ import annotations

from functools import lru_cache

from pwdlib import PasswordHash
from zxcvbn import zxcvbn  # type: ignore[import-untyped]

from tollway.errors import UserError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 copes, but a megabyte "password" is an attack, not a password
MIN_SCORE = 3  # zxcvbn's 0-4 scale: 3 is "safely unguessable", over 10^8 guesses
ZXCVBN_LENGTH = 72  # zxcvbn's own bound; what follows a strong start only adds strength
_COMMON = {"password", "passw0rd", "qwerty", "letmein", "welcome", "123456", "iloveyou"}


@lru_cache(maxsize=1)
def hasher() -> PasswordHash:
    return PasswordHash.recommended()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hasher().hash("tollway-dummy-password-for-constant-work")


def hash_password(password: str) -> str:
    """Return the argon2id hash to store; the password itself is never stored."""
    return hasher().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Check ``password``; without a hash, do the same work anyway so timing reveals nothing."""
    if password_hash is None:
        hasher().verify(password, _dummy_hash())
        return False
    try:
        return hasher().verify(password, password_hash)
    except Exception:  # an unreadable stored hash is a failed sign-in, not a crash
        return False


def check_strength(password: str, email: str = "") -> None:
    """Raise :class:`UserError` naming what to fix when ``password`` is too weak."""
    if len(password) < MIN_LENGTH:
        raise UserError(f"Use at least {MIN_LENGTH} characters for your password.")
    if len(password) > MAX_LENGTH:
        raise UserError(f"Use at most {MAX_LENGTH} characters for your password.")
    lowered = password.lower()
    if len(set(password)) < 5 or any(word in lowered for word in _COMMON):
        raise UserError("Choose a less predictable password (avoid repeats and common words).")
    local = email.partition("@")[0].lower()
    if len(local) >= 4 and local in lowered:
        raise UserError("Your password must not contain your e-mail address.")
    _check_guessable(password, email)


def _check_guessable(password: str, email: str) -> None:
    estimate = zxcvbn(password[:ZXCVBN_LENGTH], user_inputs=[email, email.partition("@")[0]])
    if estimate["score"] >= MIN_SCORE:
        return
    feedback = estimate.get("feedback") or {}
    hints = [str(feedback.get("warning") or ""), *map(str, feedback.get("suggestions") or [])]
    advice = " ".join(hint for hint in hints if hint)
    raise UserError(f"Choose a less predictable password. {advice}".strip())
