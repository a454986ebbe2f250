"""Record changes that running gateways must pick up (see ``gateway.snapshot.refresh``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tollway.db.models import ChangeKind, ChangeLog


def record_change(session: Session, kind: ChangeKind, entity_id: int = 0) -> None:
    """Append a change-log row in the caller's transaction, so it commits with the change."""
    session.add(ChangeLog(kind=kind, entity_id=entity_id))
