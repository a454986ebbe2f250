"""Admin API tokens: ``twa_`` + random characters + checksum, stored as a SHA-256 digest.

A token is shown once, when it is made. It is found by its digest (an index lookup on a hash of
the whole token, so timing says nothing about how much of a guess was right) and the digests are
compared once more with :func:`hmac.compare_digest`. Read-only tokens may only read.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import AdminToken, utcnow
from tollway.errors import NotFound, UserError
from tollway.keys import display_prefix, generate_key, key_digest
from tollway.services.audit import record

TOKEN_PREFIX = "twa_"  # noqa: S105 (a prefix, not a secret)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_MAX_DAYS = 3650


@dataclass(frozen=True)
class IssuedToken:
    """A new token in full: shown once, never stored."""

    record: AdminToken
    token: str


def _view(token: AdminToken) -> dict[str, object]:
    return {
        "name": token.name,
        "prefix": token.prefix,
        "read_only": token.read_only,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def create_token(
    session: Session, name: str, *, read_only: bool = False, expires_days: int | None = None
) -> IssuedToken:
    """Make a token named ``name`` (unique), read-write unless ``read_only``."""
    if not _NAME.match(name):
        raise UserError(
            f"token name {name!r}: use 1-100 letters, digits, '.', '_' or '-' (e.g. 'ci-deploy')"
        )
    if expires_days is not None and not 1 <= expires_days <= _MAX_DAYS:
        raise UserError(f"--expires: give a number of days from 1 to {_MAX_DAYS}")
    if session.scalar(select(AdminToken.id).where(AdminToken.name == name)) is not None:
        raise UserError(f"a token named {name!r} already exists (revoke it first)")
    token = generate_key(TOKEN_PREFIX)
    now = utcnow()
    row = AdminToken(
        name=name,
        digest=key_digest(token),
        prefix=display_prefix(token),
        read_only=read_only,
        created_at=now,
        expires_at=now + timedelta(days=expires_days) if expires_days else None,
    )
    session.add(row)
    session.flush()
    record(session, "admin-token", name, "create", after=_view(row))
    return IssuedToken(row, token)


def list_tokens(session: Session) -> list[AdminToken]:
    return list(session.scalars(select(AdminToken).order_by(AdminToken.name)))


def revoke_token(session: Session, name: str) -> AdminToken:
    """Revoke the token ``name``: it stops working at once. The row stays (for the audit log);
    its name can be taken by a new token."""
    row = session.scalar(
        select(AdminToken).where(AdminToken.name == name, AdminToken.revoked_at.is_(None))
    )
    if row is None:
        raise NotFound(f"no live token named {name!r}")
    row.revoked_at = utcnow()
    row.name = f"{name}~revoked~{row.id}"[:100]
    session.flush()
    record(session, "admin-token", name, "revoke", before=_view(row) | {"name": name})
    return row


def token_state(row: AdminToken, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def authenticate_token(session: Session, token: str, now: datetime) -> AdminToken | None:
    """The live token ``token`` is, else None (unknown, revoked or expired)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = key_digest(token)
    row = session.scalar(select(AdminToken).where(AdminToken.digest == digest))
    if row is None or not hmac.compare_digest(row.digest, digest):
        return None
    if token_state(row, now) != "active":
        return None
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return row
