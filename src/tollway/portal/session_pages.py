"""Ending sessions from the portal: one of your own (account page) or all of a user's (admin).

"Sign out everywhere" is ``auth.signout_everywhere``; the list of your sessions is on the
account page (``pages``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from tollway.portal.security import PREFIX, session_slot
from tollway.portal.web import (
    admin_required,
    checked_form,
    login_required,
    portal_of,
    redirect,
    signed_in,
)
from tollway.services.audit import record
from tollway.services.portal_sessions import end_user_sessions


@login_required
async def end_one(request: Request) -> Response:
    """End one of the signed-in user's sessions (this one included: that signs out here)."""
    await checked_form(request)
    session_id = request.path_params["session_id"]
    await portal_of(request).signins.end_one(signed_in(request).id, session_id)
    if session_id == request.scope.get("portal_session_id"):
        session_slot(request).end = True
        return redirect(f"{PREFIX}/")
    return redirect(f"{PREFIX}/account")


@admin_required
async def end_users_sessions(request: Request) -> Response:
    """An administrator signs a user out everywhere (their keys keep working)."""
    await checked_form(request)
    await portal_of(request).act(request, _sign_out_everywhere, request.path_params["user_id"])
    return redirect(f"{PREFIX}/admin")


def _sign_out_everywhere(session: Session, user_id: int) -> None:
    ended = end_user_sessions(session, user_id)
    record(session, "user", user_id, "sign-out-everywhere", sessions_ended=ended)
