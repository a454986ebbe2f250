"""Server-side portal sessions: the store behind sign-ins and the middleware that sets cookies.

The middleware reads the ``tollway_portal`` cookie's token into the request's
:class:`~tollway.portal.security.SessionSlot`; pages look the token up (``current_user``) only
when they need the user, which also counts as activity for the idle timeout. Just before the
response starts, a sign-in that ``start_session`` asked for is written to the store and its
cookie set, or the session that ``end_session`` ended is deleted and its cookie cleared.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import cookie_parser

from tollway.db.models import PortalSession, User
from tollway.db.session import transaction
from tollway.portal.security import COOKIE, FORM_COOKIE, PREFIX, SLOT, SessionSlot
from tollway.services import portal_sessions as store
from tollway.services.portal_sessions import SessionRules, digest_of
from tollway.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


class SignIns:
    """Portal sessions in the database, timed by the portal's clock."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        rules: SessionRules,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.rules = rules
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC).replace(tzinfo=None)

    async def _run(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.sessions) as session:
                return work(session)

        return await run_in_threadpool(run)

    async def open(self, user_id: int, user_agent: str, address: str) -> str:
        """Record a sign-in; the new token for the cookie."""
        token = secrets.token_urlsafe(32)
        now, digest = self.now(), digest_of(token)
        await self._run(
            lambda s: store.open_session(
                s, user_id, digest, now, self.rules, user_agent=user_agent, address=address
            )
        )
        return token

    async def user(self, token: str) -> tuple[User, PortalSession] | None:
        """The signed-in user and their session, if the token's session is live."""
        now, digest = self.now(), digest_of(token)
        return await self._run(lambda s: store.signed_in_user(s, digest, now, self.rules))

    async def end(self, token: str, *, everywhere: bool = False) -> None:
        """End the token's session (``everywhere``: every session of its user)."""
        digest = digest_of(token)

        def work(session: Session) -> None:
            if everywhere:
                found = store.signed_in_user(session, digest, self.now(), self.rules)
                if found is not None:
                    store.end_user_sessions(session, found[0].id)
            store.end_session(session, digest)

        await self._run(work)

    async def end_all(self, user_id: int) -> int:
        return await self._run(lambda s: store.end_user_sessions(s, user_id))

    async def end_one(self, user_id: int, session_id: int) -> bool:
        return await self._run(lambda s: store.end_session_of(s, user_id, session_id))

    async def list(self, user_id: int) -> list[PortalSession]:
        now = self.now()
        return await self._run(lambda s: store.sessions_of(s, user_id, now, self.rules))


class PortalSessions:
    """Reads the sign-in cookie, and writes sign-ins and sign-outs when the response starts.

    ``secure_always``: mark cookies ``Secure`` even on plain http requests (the public URL is
    https, so browsers only ever reach the portal over https).
    """

    def __init__(
        self, app: ASGIApp, signins: SignIns, form_secret: str, *, secure_always: bool = False
    ) -> None:
        self.signins = signins
        self.secure_always = secure_always
        options = {"session_cookie": FORM_COOKIE, "max_age": signins.rules.max_age}
        self.plain = SessionMiddleware(app, form_secret, path=PREFIX, same_site="lax", **options)  # type: ignore[arg-type]
        self.secure = SessionMiddleware(
            app,
            form_secret,
            path=PREFIX,
            same_site="lax",
            https_only=True,
            **options,  # type: ignore[arg-type]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.plain(scope, receive, send)
            return
        slot = scope[SLOT] = SessionSlot(token=_cookie(scope, COOKIE))
        secure = self.secure_always or scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = await self._settle(slot, scope, secure)
                if cookie is not None:
                    MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await (self.secure if secure else self.plain)(scope, receive, send_with_cookie)

    async def _settle(self, slot: SessionSlot, scope: Scope, secure: bool) -> str | None:
        """Apply the sign-in or sign-out this request asked for; the Set-Cookie value."""
        if slot.start_user is not None:
            if slot.token is not None:
                await self.signins.end(slot.token)
            token = await self.signins.open(slot.start_user, _user_agent(scope), _client(scope))
            return _set_cookie(token, self.signins.rules.max_age, secure)
        if slot.end and slot.token is not None:
            await self.signins.end(slot.token, everywhere=slot.everywhere)
            return _set_cookie("", 0, secure)
        return None


def _set_cookie(token: str, max_age: int, secure: bool) -> str:
    flags = f"Max-Age={max_age}; Path={PREFIX}; HttpOnly; SameSite=Lax"
    return f"{COOKIE}={token}; {flags}{'; Secure' if secure else ''}"


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope["headers"]:
        if key == b"cookie":
            token = cookie_parser(value.decode("latin-1")).get(name)
            if token:
                return str(token)
    return None


def _user_agent(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"user-agent":
            return str(value.decode("latin-1"))[:200]
    return ""


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""
