"""Portal sign-ins kept in the store: open, look up, list and end them.

A session lives until the first of: its absolute lifetime (``expires_at``, fixed at sign-in and
never extended), ``idle`` seconds without a page view, sign-out, or the end of every session of
its user (sign out everywhere, a password change or reset, blocking).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, not_, or_, select
from sqlalchemy.orm import Session

from tollway.db.models import PortalSession, User, UserState

TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most once a minute per session
MOST_PER_USER = 50  # a user's oldest sessions end beyond this many


@dataclass(frozen=True)
class SessionRules:
    """How long sessions last: ``max_age`` in all, ``idle`` without a page view (seconds)."""

    max_age: int
    idle: int


def digest_of(token: str) -> str:
    """What the store keeps of a session token (the token itself is only in the cookie)."""
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session,
    user_id: int,
    digest: str,
    now: datetime,
    rules: SessionRules,
    *,
    user_agent: str = "",
    address: str = "",
) -> PortalSession:
    """Record a new sign-in (and forget sessions that have expired, anyone's)."""
    session.execute(delete(PortalSession).where(_expired(now, rules)))
    record = PortalSession(
        digest=digest,
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=rules.max_age),
        user_agent=user_agent[:200],
        address=address[:64],
    )
    session.add(record)
    session.flush()
    _keep_newest(session, user_id)
    return record


def _expired(now: datetime, rules: SessionRules) -> ColumnElement[bool]:
    idle_since = now - timedelta(seconds=rules.idle)
    return or_(PortalSession.expires_at <= now, PortalSession.last_seen_at <= idle_since)


def _keep_newest(session: Session, user_id: int) -> None:
    ids = session.scalars(
        select(PortalSession.id)
        .where(PortalSession.user_id == user_id)
        .order_by(PortalSession.id.desc())
        .offset(MOST_PER_USER)
    ).all()
    if ids:
        session.execute(delete(PortalSession).where(PortalSession.id.in_(ids)))


def signed_in_user(
    session: Session, digest: str, now: datetime, rules: SessionRules
) -> tuple[User, PortalSession] | None:
    """The active user this session belongs to, if it is still live; marks it as seen."""
    record = session.scalar(select(PortalSession).where(PortalSession.digest == digest))
    if record is None:
        return None
    idle_since = now - timedelta(seconds=rules.idle)
    user = session.get(User, record.user_id)
    if record.expires_at <= now or record.last_seen_at <= idle_since or user is None:
        session.delete(record)
        return None
    if user.state != UserState.active:
        return None
    if now - record.last_seen_at >= TOUCH_EVERY:
        record.last_seen_at = now
    return user, record


def end_session(session: Session, digest: str) -> None:
    """Sign one browser out."""
    session.execute(delete(PortalSession).where(PortalSession.digest == digest))


def end_user_sessions(session: Session, user_id: int) -> int:
    """Sign ``user_id`` out everywhere; the number of sessions ended."""
    ended = session.execute(delete(PortalSession).where(PortalSession.user_id == user_id))
    return int(getattr(ended, "rowcount", 0) or 0)


def end_session_of(session: Session, user_id: int, session_id: int) -> bool:
    """End one of ``user_id``'s own sessions (False: no such session of theirs)."""
    ended = session.execute(
        delete(PortalSession).where(
            PortalSession.id == session_id, PortalSession.user_id == user_id
        )
    )
    return bool(getattr(ended, "rowcount", 0))


def sessions_of(
    session: Session, user_id: int, now: datetime, rules: SessionRules
) -> list[PortalSession]:
    """``user_id``'s live sessions, most recently used first."""
    return list(
        session.scalars(
            select(PortalSession)
            .where(PortalSession.user_id == user_id)
            .where(not_(_expired(now, rules)))
            .order_by(PortalSession.last_seen_at.desc(), PortalSession.id.desc())
        )
    )
