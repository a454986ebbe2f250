"""Portal sessions, CSRF tokens and safe redirects.

Sessions are signed cookies (itsdangerous via Starlette's SessionMiddleware), scoped to
``/portal``, ``HttpOnly`` and ``SameSite=Lax``; ``Secure`` is added per request when it came
over https. Signing in replaces the whole session (new id, new CSRF token), so a session an
attacker planted before sign-in is worth nothing after it (session fixation).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from tollway.types import ASGIApp, Receive, Scope, Send

PREFIX = "/portal"
HOME = "/portal/"
COOKIE = "tollway_portal"
CSRF_FIELD = "csrf_token"


class PortalSessions:
    """Session middleware that marks the cookie ``Secure`` whenever the request used https."""

    def __init__(self, app: ASGIApp, secret: str, max_age: int) -> None:
        options = {"session_cookie": COOKIE, "max_age": max_age, "path": PREFIX}
        self.plain = SessionMiddleware(app, secret, same_site="lax", **options)  # type: ignore[arg-type]
        self.secure = SessionMiddleware(app, secret, same_site="lax", https_only=True, **options)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        layer = self.secure if scope.get("scheme") in ("https", "wss") else self.plain
        await layer(scope, receive, send)


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use); every form carries it."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, form: FormData) -> None:
    """403 unless the form carries this session's CSRF token."""
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str):
        raise HTTPException(403, "The form was not sent from this site or has expired.")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "The form was not sent from this site or has expired.")


def start_session(request: Request, user_id: int) -> None:
    """Sign ``user_id`` in with a brand-new session (rotated id and CSRF token)."""
    request.session.clear()
    request.session.update(
        sid=secrets.token_urlsafe(16), uid=user_id, csrf=secrets.token_urlsafe(32)
    )


def end_session(request: Request) -> None:
    request.session.clear()


def safe_next(url: object) -> str:
    """``url`` if it is a path on this site, else the portal home (no open redirects)."""
    if not isinstance(url, str) or not url.startswith("/") or len(url) > 2000:
        return HOME
    if url.startswith(("//", "/\\")) or any(ord(c) < 33 or c == "\\" for c in url):
        return HOME
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return HOME
    return url
