"""Subscription keys: generation, digests and display prefixes.

A key looks like ``tw_`` + 40 base62 characters (238 bits from :mod:`secrets`) + a 6-character
base62 CRC32 checksum, like GitHub's token format: the fixed prefix lets secret scanners find
leaked keys, and the checksum lets them tell real keys from look-alikes without calling us.
Only the SHA-256 digest and a short display prefix are ever stored.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

KEY_PREFIX = "tw_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 40
_CHECKSUM_CHARS = 6
DISPLAY_CHARS = 10  # "tw_" + 7 characters: enough to recognise a key, useless to an attacker


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def generate_key(prefix: str = KEY_PREFIX) -> str:
    """Return a new random subscription key (or, with ``prefix="twa_"``, an admin token)."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    checksum = _base62(zlib.crc32(body.encode()), _CHECKSUM_CHARS)
    return f"{prefix}{body}{checksum}"


def has_valid_checksum(key: str) -> bool:
    """True when ``key`` is shaped like a Tollway key and its checksum matches."""
    if not key.startswith(KEY_PREFIX) or len(key) != len(KEY_PREFIX) + 46:
        return False
    body, checksum = key[len(KEY_PREFIX) : -_CHECKSUM_CHARS], key[-_CHECKSUM_CHARS:]
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_CHARS) == checksum


def key_digest(key: str | bytes) -> str:
    """SHA-256 hex digest under which a key is stored and looked up."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_CHARS]
