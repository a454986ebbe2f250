"""Sign-in through an OpenID Connect provider: find, link or create the developer.

The rules (docs/portal.md, "Linking rules"; issue 16):

- An identity is the issuer's ``iss`` + subject; once linked, it signs in to its account
  whatever e-mail the provider later reports.
- A first sign-in needs an e-mail address the provider vouches for. With no account for that
  address, a new account is made (its address counts as verified).
- An existing account with that address is never taken over silently. Only when the provider
  allows it (``link_existing_accounts``) and the account's own address was verified (so its
  owner proved the mailbox, not whoever typed the address at sign-up) and it is not an admin.
  Otherwise the sign-in is refused and the person is told to sign in the way they did before.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import User, UserIdentity, UserRole, UserState
from tollway.errors import UserError
from tollway.services.users import create_user, find_user

NO_VERIFIED_EMAIL = "The provider did not confirm a verified e-mail address for you."
ACCOUNT_EXISTS = (
    "An account with this e-mail address already exists. Sign in the way you did before "
    "(with its password, or with the provider you used first)."
)
ACCOUNT_UNVERIFIED = (
    "An account with this e-mail address exists, but its address was never verified. Sign in "
    "with its password, or verify the address with the link sent at sign-up, then try again."
)
ACCOUNT_ADMIN = (
    "This address belongs to an administrator account, which is never linked automatically. "
    "Sign in with its password."
)


@dataclass(frozen=True)
class ExternalIdentity:
    """What a validated ID token says about the person signing in.

    ``subject`` is the stable id at ``issuer`` (``sub``, or Entra's ``oid``); ``legacy_subject``
    is the token's ``sub``, which found identities stored before issuers were recorded.
    ``link_existing`` is the provider's ``link_existing_accounts`` setting.
    """

    provider: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str = ""
    legacy_subject: str = ""
    link_existing: bool = False


def sign_in_external(session: Session, identity: ExternalIdentity) -> User:
    """The user for ``identity``: already linked, linked now under the rules above, or new."""
    user = _linked_user(session, identity)
    if user is None:
        user = _link_or_create(session, identity)
    if user.state != UserState.active:
        raise UserError("This account is blocked. Contact the API provider.")
    return user


def _linked_user(session: Session, identity: ExternalIdentity) -> User | None:
    link = session.scalar(
        select(UserIdentity).where(
            UserIdentity.issuer == identity.issuer, UserIdentity.subject == identity.subject
        )
    )
    if link is None and identity.legacy_subject:
        link = session.scalar(
            select(UserIdentity).where(
                UserIdentity.issuer.is_(None),
                UserIdentity.provider == identity.provider,
                UserIdentity.subject == identity.legacy_subject,
            )
        )
        if link is not None:  # made before migration 0004: pin it to this issuer from now on
            link.issuer, link.subject = identity.issuer, identity.subject
            session.flush()
    return session.get(User, link.user_id) if link is not None else None


def _link_or_create(session: Session, identity: ExternalIdentity) -> User:
    if not identity.email or not identity.email_verified:
        raise UserError(NO_VERIFIED_EMAIL)
    user = find_user(session, identity.email)
    if user is None:
        user = create_user(session, identity.email, name=identity.name)
        user.email_verified = True
    else:
        _check_linkable(user, identity)
    session.add(
        UserIdentity(
            user_id=user.id,
            provider=identity.provider,
            issuer=identity.issuer,
            subject=identity.subject,
        )
    )
    session.flush()
    return user


def _check_linkable(user: User, identity: ExternalIdentity) -> None:
    """Refuse to hand an existing account to a new identity unless every rule allows it."""
    if not identity.link_existing:
        raise UserError(ACCOUNT_EXISTS)
    if user.role == UserRole.admin:
        raise UserError(ACCOUNT_ADMIN)
    if not user.email_verified:
        raise UserError(ACCOUNT_UNVERIFIED)
