"""Developer and administrator accounts."""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.db.models import ChangeKind, User, UserRole, UserState
from tollway.errors import NotFound, UserError
from tollway.services.changes import record_change

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
    return user


def set_user_state(session: Session, user: User, state: UserState) -> None:
    """Block or unblock a user; blocking disables all their keys in every gateway."""
    user.state = state
    session.flush()
    record_change(session, ChangeKind.user, user.id)
