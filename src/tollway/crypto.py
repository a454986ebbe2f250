"""Encryption at rest for secret named values (Fernet, key derived from TOLLWAY_SECRET_KEY)."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tollway.errors import UserError

ENCRYPTED_PREFIX = "fernet:"


class SecretBox:
    """Encrypts and decrypts short secrets with a key derived from the process secret key."""

    def __init__(self, secret_key: str | None) -> None:
        self._fernet: Fernet | None = None
        if secret_key:
            derived = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=b"tollway named values"
            ).derive(secret_key.encode())
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise UserError(
                "secret named values need TOLLWAY_SECRET_KEY to be set (any long random string)"
            )
        return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return ENCRYPTED_PREFIX + self._require().encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        try:
            return self._require().decrypt(stored[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise UserError(
                "a secret named value cannot be decrypted: TOLLWAY_SECRET_KEY differs from the "
                "key it was stored with"
            ) from None
