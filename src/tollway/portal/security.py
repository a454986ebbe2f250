"""Portal sign-ins, CSRF tokens and safe redirects.

A sign-in is a session kept in the store (``tollway.services.portal_sessions``); the
``tollway_portal`` cookie carries only a random token, of which the store keeps a SHA-256 digest.
Signing out, sign out everywhere, a password change or reset and blocking delete the rows, so a
copied cookie is then worth nothing. Form state (the CSRF token, a pending OpenID Connect
sign-in) lives in ``tollway_portal_form``, a signed cookie (itsdangerous via Starlette's
SessionMiddleware) that signs nobody in. Both are scoped to ``/portal``, ``HttpOnly``,
``SameSite=Lax``, and ``Secure`` when the client used https (through trusted proxies too).

Signing in replaces both (new session token, new CSRF token), so a cookie an attacker planted
before sign-in is worth nothing after it (session fixation).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

PREFIX = "/portal"
HOME = "/portal/"
COOKIE = "tollway_portal"
FORM_COOKIE = "tollway_portal_form"
CSRF_FIELD = "csrf_token"
SLOT = "tollway.portal_session"


@dataclass
class SessionSlot:
    """This request's sign-in: the cookie's token, and what the response must do with it."""

    token: str | None = None
    start_user: int | None = None
    end: bool = False
    everywhere: bool = False


def session_slot(request: Request) -> SessionSlot:
    """This request's :class:`SessionSlot` (``PortalSessions`` fills it from the cookie)."""
    slot = request.scope.get(SLOT)
    if not isinstance(slot, SessionSlot):
        slot = request.scope[SLOT] = SessionSlot()
    return slot


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
    """Sign ``user_id`` in with a brand-new session (new token and CSRF token); the response
    records it in the store and sets the cookie (any session this browser had ends)."""
    request.session.clear()
    request.session["csrf"] = secrets.token_urlsafe(32)
    slot = session_slot(request)
    slot.start_user, slot.end = user_id, False


def end_session(request: Request, *, everywhere: bool = False) -> None:
    """Sign this browser out (``everywhere``: every session of its user); the response
    deletes the session(s) from the store and clears the cookie."""
    request.session.clear()
    slot = session_slot(request)
    slot.start_user, slot.end, slot.everywhere = None, True, everywhere


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
