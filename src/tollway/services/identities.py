"""Sign-in through an OpenID Connect provider: find, link or create the developer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import User, UserIdentity, UserState
from tollway.errors import UserError
from tollway.services.users import create_user, find_user


@dataclass(frozen=True)
class ExternalIdentity:
    """What a validated ID token says about the person signing in."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str = ""


def sign_in_external(session: Session, identity: ExternalIdentity) -> User:
    """The user for ``identity``: already linked, linked now by verified e-mail, or new.

    Linking to an existing account needs a verified e-mail; an existing account whose own
    address was never verified loses its password on linking, so whoever registered it with
    someone else's address cannot keep a way in (account pre-hijacking).
    """
    user = session.scalar(
        select(User)
        .join(UserIdentity, UserIdentity.user_id == User.id)
        .where(UserIdentity.provider == identity.provider, UserIdentity.subject == identity.subject)
    )
    if user is None:
        user = _link_or_create(session, identity)
    if user.state != UserState.active:
        raise UserError("This account is blocked. Contact the API provider.")
    return user


def _link_or_create(session: Session, identity: ExternalIdentity) -> User:
    if not identity.email or not identity.email_verified:
        raise UserError("The provider did not confirm a verified e-mail address for you.")
    user = find_user(session, identity.email)
    if user is None:
        user = create_user(session, identity.email, name=identity.name)
    elif not user.email_verified:
        user.password_hash = None
    user.email_verified = True
    session.add(UserIdentity(user_id=user.id, provider=identity.provider, subject=identity.subject))
    session.flush()
    return user
