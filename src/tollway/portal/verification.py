"""E-mail verification hook: after a sign-up, Tollway POSTs ``{"email", "verify_url"}`` as JSON
to ``TOLLWAY_PORTAL_VERIFICATION_HOOK`` (your mail sender, a serverless function...). Opening
``verify_url`` marks the address verified. With ``TOLLWAY_PORTAL_VERIFICATION_REQUIRED=true``
only verified developers can subscribe.

The link is a signed, expiring token (itsdangerous), never stored. The hook is called in the
background, so a sign-up answers in the same time whether or not the address was new.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from itsdangerous import BadSignature, URLSafeTimedSerializer

logger = logging.getLogger("tollway.portal")

MAX_AGE = 2 * 86400  # seconds a verification link works


class EmailVerification:
    def __init__(self, secret: str, hook_url: str | None, max_age: int = MAX_AGE) -> None:
        self.signer = URLSafeTimedSerializer(secret, salt="tollway-verify-email")
        self.hook_url = hook_url
        self.max_age = max_age
        self._sending: set[asyncio.Task[None]] = set()

    def token(self, user_id: int, email: str) -> str:
        return self.signer.dumps([user_id, email])

    def read(self, token: str) -> tuple[int, str] | None:
        """(user id, e-mail) from a valid, unexpired token, else None."""
        try:
            user_id, email = self.signer.loads(token, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        return int(user_id), str(email)

    def send(self, email: str, verify_url: str) -> None:
        """Call the hook in the background (failures are logged, never shown to the user)."""
        if self.hook_url is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(email, verify_url))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, email: str, verify_url: str) -> None:
        assert self.hook_url is not None
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                reply = await client.post(
                    self.hook_url, json={"email": email, "verify_url": verify_url}
                )
                reply.raise_for_status()
        except httpx.HTTPError as exc:
            # No address and no link in the log: the link is a credential until it expires.
            logger.warning("e-mail verification hook failed: %s", type(exc).__name__)
