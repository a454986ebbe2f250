"""The admin API for signed-in portal admins: ``/portal/admin/api/v1/...`` is the admin API
(``/admin/api/v1/...``) with the portal session instead of a token.

The portal's cookies are scoped to ``/portal`` (so no API behind the gateway ever receives them),
which is why the API is reached here, under the portal, through the portal's own edge (allowed
hosts, trusted proxies) and sessions. Only admins pass; a change (any method but GET, HEAD,
OPTIONS) must carry the session's CSRF token in ``X-CSRF-Token``, so another site cannot make a
signed-in admin's browser change anything. The admin API then audits the change under the
admin's name (``user:EMAIL``).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from tollway.db.models import UserRole
from tollway.portal.security import PREFIX
from tollway.portal.web import current_user
from tollway.problems import ProblemType, register_problem, send_problem
from tollway.types import ASGIApp, Receive, Scope, Send

PORTAL_ADMIN = "tollway.portal_admin"
"""Scope key: (e-mail, client address) of the signed-in admin the bridge let through."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SESSION_REQUIRED = register_problem(
    ProblemType(
        "portal-admin-session-required",
        "Admin sign-in required",
        401,
        "Sign in to the portal as an administrator, or call /admin/api/v1 with a token.",
    )
)
NOT_ADMIN = register_problem(
    ProblemType(
        "portal-admin-only", "Administrators only", 403, "Only portal administrators may do this."
    )
)
CSRF_MISSING = register_problem(
    ProblemType(
        "portal-csrf",
        "CSRF token missing or wrong",
        403,
        "Send this session's CSRF token (the csrf_token of any portal form) in X-CSRF-Token.",
    )
)


class AdminApiBridge:
    """Mounted at ``/portal/admin/api/v1``; passes admins on to the admin API app."""

    def __init__(self, admin_api: ASGIApp) -> None:
        self.admin_api = admin_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        user = await current_user(request)
        if user is None:
            await send_problem(send, SESSION_REQUIRED)
            return
        if user.role != UserRole.admin:
            await send_problem(send, NOT_ADMIN)
            return
        if scope["method"] not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            expected = request.session.get("csrf")
            if not isinstance(expected, str) or not hmac.compare_digest(
                sent.encode(), expected.encode()
            ):
                await send_problem(send, CSRF_MISSING)
                return
        path = scope["path"].removeprefix(PREFIX)
        address = request.client.host if request.client else ""
        inner = {
            **scope,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            PORTAL_ADMIN: (user.email, address),
        }
        await self.admin_api(inner, receive, send)
