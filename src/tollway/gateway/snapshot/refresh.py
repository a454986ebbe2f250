"""Keep a running gateway in step with the store by polling ``change_log``.

Every ``refresh_interval`` seconds each process reads change-log rows it has not seen: a config
change rebuilds the route table, a subscription or user change updates only those keys. So a key
created, regenerated, suspended or deleted by any process works (or stops working) everywhere
within about one interval, with one small indexed query per second per process.

Change-log ids come from a sequence, and on PostgreSQL a transaction can commit after another
that took a higher id. The poll therefore looks back ``LOOKBACK`` ids below the highest seen and
skips the ids it has already applied, so a late commit is still picked up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from tollway.crypto import SecretBox
from tollway.db.models import ChangeKind, ChangeLog, utcnow
from tollway.gateway.snapshot.keyindex import KeyIndex
from tollway.gateway.snapshot.load import (
    ConfigData,
    build_key_index,
    load_config_data,
    load_subscriptions,
)
from tollway.gateway.snapshot.state import GatewayState, compile_state

logger = logging.getLogger("tollway.gateway")

LOOKBACK = 500
MAX_INCREMENTAL = 2000
CHANGE_LOG_RETENTION = timedelta(hours=1)


@dataclass
class Changes:
    config: bool = False
    subscription_ids: set[int] = field(default_factory=set)
    user_ids: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.config or bool(self.subscription_ids or self.user_ids)


class StateLoader:
    """Loads full and incremental gateway state from the store (runs in a worker thread)."""

    def __init__(self, sessions: sessionmaker[Session], secret_box: SecretBox) -> None:
        self.sessions = sessions
        self.secret_box = secret_box
        self.high_water = 0
        self._seen: set[int] = set()
        self._config: ConfigData | None = None

    def load_full(self, previous: GatewayState | None) -> GatewayState:
        with self.sessions() as session:
            high = session.scalar(select(func.max(ChangeLog.id))) or 0
            config = load_config_data(session)
            keys = build_key_index(session, config)
        self._config = config
        self._mark_seen_up_to(high)
        return compile_state(config, keys, self.secret_box, previous)

    def _mark_seen_up_to(self, high: int) -> None:
        self.high_water = max(self.high_water, high)
        self._seen = {i for i in self._seen if i > self.high_water - LOOKBACK}
        self._seen.update(range(max(self.high_water - LOOKBACK + 1, 1), self.high_water + 1))

    def poll(self, current: GatewayState) -> GatewayState | None:
        """Return a new state if anything changed since the last poll, else None."""
        with self.sessions() as session:
            rows = session.execute(
                select(ChangeLog.id, ChangeLog.kind, ChangeLog.entity_id)
                .where(ChangeLog.id > self.high_water - LOOKBACK)
                .order_by(ChangeLog.id)
                .limit(LOOKBACK + MAX_INCREMENTAL)
            ).all()
            changes = Changes()
            for change_id, kind, entity_id in rows:
                if change_id in self._seen:
                    continue
                self._seen.add(change_id)
                self.high_water = max(self.high_water, change_id)
                if kind == ChangeKind.config:
                    changes.config = True
                elif kind == ChangeKind.subscription:
                    changes.subscription_ids.add(entity_id)
                elif kind == ChangeKind.user:
                    changes.user_ids.add(entity_id)
            self._seen = {i for i in self._seen if i > self.high_water - LOOKBACK}
            if not changes:
                return None
            too_many = len(changes.subscription_ids) + len(changes.user_ids) > MAX_INCREMENTAL
            if changes.config or too_many or self._config is None:
                return self.load_full(current)
            updated = load_subscriptions(
                session,
                subscription_ids=changes.subscription_ids,
                user_ids=changes.user_ids,
            )
        keys: KeyIndex = current.keys.updated(updated, self._config.product_apis)
        return current.with_keys(keys)

    def prune_change_log(self) -> None:
        """Forget old changes, but always keep the newest row: SQLite would otherwise hand out
        its id again, and every gateway would take the new change for one it had seen."""
        with self.sessions() as session, session.begin():
            newest = session.scalar(select(func.max(ChangeLog.id))) or 0
            session.execute(
                delete(ChangeLog).where(
                    ChangeLog.at < utcnow() - CHANGE_LOG_RETENTION, ChangeLog.id < newest
                )
            )
