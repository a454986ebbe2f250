"""The audit log: one append-only row per change, whatever door it came through.

Every door says who is acting before it changes anything (:func:`acting`): the admin API (the
token's name), the portal (the signed-in user), the CLI (``cli``). Service functions that change
something call :func:`record` in the same transaction as the change, so the change and its audit
row commit together or not at all. Values that are secrets or key material never reach a row:
:func:`masked` replaces them (by field name) before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import AuditEntry, utcnow
from tollway.errors import UserError

MASK = "<masked>"
_SECRET_NAME = re.compile(r"secret|password|passwd|token|key|authorization|cookie|digest", re.I)
_NOT_SECRET = frozenset({"key_header", "key_query", "key", "secret"})
_ACTOR_KEY = "tollway.actor"


@dataclass(frozen=True)
class Actor:
    """Who changes something, and from which address (the client's, or ``local``)."""

    name: str
    address: str = ""

    @classmethod
    def token(cls, name: str, address: str) -> Actor:
        return cls(f"token:{name}", address)

    @classmethod
    def user(cls, email: str, address: str) -> Actor:
        return cls(f"user:{email}", address)


CLI = Actor("cli", "local")
SYSTEM = Actor("system", "local")
"""Changes made by Tollway itself (the demo's set-up, tests' fixtures): no person acted."""


def acting(session: Session, actor: Actor) -> Session:
    """Record ``actor`` as the author of every change made in this session's transaction."""
    session.info[_ACTOR_KEY] = actor
    return session


def actor_of(session: Session) -> Actor:
    actor = session.info.get(_ACTOR_KEY)
    return actor if isinstance(actor, Actor) else SYSTEM


def masked(value: Any, name: str = "") -> Any:
    """``value`` with every secret-looking field's value replaced by ``<masked>``."""
    if name and name not in _NOT_SECRET and _SECRET_NAME.search(name):
        return MASK if value not in (None, "", [], {}) else value
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def record(
    session: Session,
    entity: str,
    entity_id: object,
    action: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    **extra: Any,
) -> AuditEntry:
    """Append the audit row for one change, in the caller's transaction.

    Only the fields that differ are kept of ``before``/``after`` (all of them for a create or a
    delete); secret-looking fields are masked.
    """
    before, after = dict(before or {}), dict(after or {})
    if before and after:
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        before = {k: v for k, v in before.items() if k in changed}
        after = {k: v for k, v in after.items() if k in changed}
    changes: dict[str, Any] = {}
    if before:
        changes["before"] = masked(before)
    if after:
        changes["after"] = masked(after)
    changes.update(masked(extra))
    actor = actor_of(session)
    entry = AuditEntry(
        at=utcnow(),
        actor=actor.name[:400],
        address=actor.address[:64],
        entity=entity,
        entity_id=str(entity_id)[:400],
        action=action,
        changes=changes,
    )
    session.add(entry)
    return entry


_AGO = re.compile(r"^(\d{1,6})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``/``12h``/``7d`` before ``now``, or an ISO 8601 date or time (UTC if no zone)."""
    text = text.strip()
    if found := _AGO.match(text):
        return now - timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"since {text!r}: give an ISO date or time (2026-12-01, 2026-12-01T08:00) "
            "or an age such as 30m, 12h or 7d"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def audit_entries(
    session: Session,
    *,
    entity: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Audit rows, newest first, filtered; ``before_id`` continues a previous page."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query))
