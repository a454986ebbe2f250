"""Developer and administrator accounts."""

from __future__ import annotations

import hashlib
import hmac
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.db.models import ChangeKind, User, UserRole, UserState
from tollway.errors import NotFound, UserError
from tollway.services.audit import record
from tollway.services.changes import record_change
from tollway.services.passwords import check_strength, hash_password, verify_password
from tollway.services.portal_sessions import end_user_sessions

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 320:
        raise UserError(f"{email!r} is not an e-mail address")
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def find_user(session: Session, email: str) -> User | None:
    email = normalise_email(email)
    return session.scalar(select(User).where(func.lower(User.email) == email.lower()))


def get_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise NotFound(f"no user with e-mail {email!r}")
    return user


def create_user(
    session: Session,
    email: str,
    *,
    name: str = "",
    role: UserRole = UserRole.developer,
    password_hash: str | None = None,
) -> User:
    """Create a user; e-mail addresses are unique regardless of case."""
    email = normalise_email(email)
    if find_user(session, email) is not None:
        raise UserError(f"a user with e-mail {email!r} already exists")
    user = User(email=email, name=name, role=role, password_hash=password_hash)
    session.add(user)
    session.flush()
    record(session, "user", user.id, "create", after=user_view(user))
    return user


def user_view(user: User) -> dict[str, object]:
    """What the audit log and the admin API show of a user (never the password hash)."""
    return {
        "email": user.email,
        "name": user.name,
        "role": str(user.role),
        "state": str(user.state),
        "email_verified": bool(user.email_verified),
    }


def set_user_state(session: Session, user: User, state: UserState) -> None:
    """Block or unblock a user; blocking disables all their keys in every gateway and ends
    every portal session of theirs."""
    before = str(user.state)
    if before == state:
        return
    user.state = state
    if state == UserState.blocked:
        end_user_sessions(session, user.id)
    session.flush()
    record_change(session, ChangeKind.user, user.id)
    action = "block" if state == UserState.blocked else "unblock"
    record(session, "user", user.id, action, {"state": before}, {"state": str(state)})


def register(session: Session, email: str, password: str, *, name: str = "") -> User | None:
    """Sign up a developer with a password; None when the e-mail is already taken.

    The caller must answer both outcomes the same way (no user enumeration), so the password
    is hashed even when the account exists, to keep the timing alike.
    """
    email = normalise_email(email)
    check_strength(password, email)
    password_hash = hash_password(password)
    if find_user(session, email) is not None:
        return None
    return create_user(session, email, name=name.strip()[:200], password_hash=password_hash)


def mark_email_verified(session: Session, user_id: int, email: str) -> bool:
    """Mark the address verified if ``user_id`` still has it (False: no such user/address)."""
    user = session.get(User, user_id)
    if user is None or user.email != email:
        return False
    user.email_verified = True
    session.flush()
    record(session, "user", user.id, "verify-email")
    return True


def password_fingerprint(user: User) -> str:
    """Changes whenever the password does: a reset link made for one hash dies with it."""
    return hashlib.sha256((user.password_hash or "no password").encode()).hexdigest()[:24]


def reset_candidate(session: Session, email: str) -> tuple[int, str, str] | None:
    """(id, e-mail, password fingerprint) of the active user with this address, else None."""
    try:
        user = find_user(session, email)
    except UserError:
        return None
    if user is None or user.state != UserState.active:
        return None
    return user.id, user.email, password_fingerprint(user)


def reset_password(session: Session, user_id: int, fingerprint: str, password: str) -> str | None:
    """Set a new password if the link's fingerprint still matches; the user's e-mail, or None."""
    user = session.get(User, user_id)
    if user is None or user.state != UserState.active:
        return None
    if not hmac.compare_digest(password_fingerprint(user), fingerprint):
        return None
    set_password(session, user, password)
    user.email_verified = True  # the link reached this mailbox: the address is proven
    return user.email


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, else None (same work either way)."""
    try:
        user = find_user(session, email)
    except UserError:
        user = None
    ok = verify_password(password, user.password_hash if user else None)
    if user is None or not ok or user.state != UserState.active:
        return None
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.email)))


def get_user_by_id(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def set_password(session: Session, user: User, password: str) -> None:
    """Give ``user`` a new password (strength-checked, stored as an argon2id hash); every
    portal session of theirs ends, so a browser someone else kept is signed out."""
    check_strength(password, user.email)
    user.password_hash = hash_password(password)
    end_user_sessions(session, user.id)
    session.flush()
    record(session, "user", user.id, "set-password")


def update_user(
    session: Session, user: User, *, name: str | None = None, role: UserRole | None = None
) -> None:
    """Change a user's display name or role (one audit row for what changed)."""
    before = user_view(user)
    if name is not None:
        user.name = name.strip()[:200]
    if role is not None:
        user.role = role
    after = user_view(user)
    if after == before:
        return
    session.flush()
    record(session, "user", user.id, "update", before, after)
