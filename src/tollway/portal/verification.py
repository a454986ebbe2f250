"""Links sent by e-mail through a hook: address verification and password reset.

After a sign-up, Tollway POSTs ``{"purpose": "verify", "email", "verify_url"}`` as JSON to
``TOLLWAY_PORTAL_VERIFICATION_HOOK`` (your mail sender, a serverless function...); opening the
link marks the address verified (with ``TOLLWAY_PORTAL_VERIFICATION_REQUIRED=true`` only
verified developers can subscribe). A password reset request sends
``{"purpose": "reset", "email", "reset_url"}`` to the same hook.

Links are signed, expiring tokens (itsdangerous), never stored or logged. The hook is called in
the background, so the page answers in the same time whether or not the address has an account.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from itsdangerous import BadSignature, URLSafeTimedSerializer

logger = logging.getLogger("tollway.portal")

MAX_AGE = 2 * 86400  # seconds a verification link works
RESET_MAX_AGE = 3600  # seconds a password reset link works


class EmailLinks:
    """Signed links for one purpose ("verify" or "reset"), sent through the hook."""

    def __init__(
        self, secret: str, hook_url: str | None, purpose: str, max_age: int = MAX_AGE
    ) -> None:
        self.signer = URLSafeTimedSerializer(secret, salt=f"tollway-email-{purpose}")
        self.hook_url = hook_url
        self.purpose = purpose
        self.max_age = max_age
        self._sending: set[asyncio.Task[None]] = set()

    def token(self, user_id: int, check: str) -> str:
        """``check`` must still match when the link is used (the address, a password digest)."""
        return self.signer.dumps([user_id, check])

    def read(self, token: str) -> tuple[int, str] | None:
        """(user id, check) from a valid, unexpired token, else None."""
        try:
            user_id, check = self.signer.loads(token, max_age=self.max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        return int(user_id), str(check)

    def send(self, email: str, link: str) -> None:
        """Call the hook in the background (failures are logged, never shown to the user)."""
        if self.hook_url is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(email, link))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _post(self, email: str, link: str) -> None:
        assert self.hook_url is not None
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                payload = {"purpose": self.purpose, "email": email, f"{self.purpose}_url": link}
                reply = await client.post(self.hook_url, json=payload)
                reply.raise_for_status()
        except httpx.HTTPError as exc:
            # No address and no link in the log: the link is a credential until it expires.
            logger.warning("e-mail %s hook failed: %s", self.purpose, type(exc).__name__)
