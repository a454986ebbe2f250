"""Keep a running gateway in step with the store by polling ``change_log``.

Every ``refresh_interval`` seconds each process reads change-log rows it has not seen: a config
change rebuilds the route table and policy chains (the key index keeps every entry: a key holds
its product id, and which APIs a product opens is read from the routes), a subscription or user
change updates only those keys, in place. So a key created, regenerated, suspended or deleted by
any process works (or stops working) everywhere within about one interval, with one small
indexed query per second per process.

Everything here runs in a worker thread (``asyncio.to_thread``). A full load streams the keys
in batches and lets the event loop's thread run between them; the new state is swapped in by
the gateway on its loop in one assignment. Incremental key changes are applied to the live
index in place, one dict operation per key (see ``keyindex``): the polls are serialised by the
gateway's refresh lock, so there is one writer, and the event loop only reads.

Change-log ids come from a sequence, and on PostgreSQL a transaction can commit after another
that took a higher id. The poll therefore looks back ``LOOKBACK`` ids below the highest seen and
skips the ids it has already applied, so a late commit is still picked up.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
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
FREEZE_AT = 100_000
"""Keys from which a full load ends with ``gc.freeze()``. The index itself gives the collector
almost nothing to scan (its dicts hold only bytes and ints, which are not tracked); freezing
moves everything else alive by then (modules, config, the index's two lists) out of every later
collection, so a full pass stays short. Small stores gain nothing by it."""


@dataclass
class Changes:
    config: bool = False
    subscription_ids: set[int] = field(default_factory=set)
    user_ids: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.config or bool(self.subscription_ids or self.user_ids)


@dataclass
class LoadCounts:
    """What the loader has read so far (the tests assert on it; full loads are also logged)."""

    full_loads: int = 0  # every key read from the store (start, or too many changes at once)
    keys_loaded: int = 0  # subscriptions read by full loads
    config_loads: int = 0  # route table and policies rebuilt, keys kept
    subscriptions_updated: int = 0  # subscriptions re-read and applied in place
    last_full_load_seconds: float = 0.0


@contextlib.contextmanager
def _no_collections_meanwhile() -> Iterator[list[bool]]:
    """No automatic garbage collection while a full load runs, then ``gc.freeze()`` if the
    caller appended True (a large load). A full collection holds the interpreter for as long as
    it takes to scan every tracked object (tens of ms in a gateway process, more on a busy
    machine): started by the loader's allocations, it would pause the event loop. The load
    itself makes no reference cycles; the loop's, if any, wait until after the load."""
    collecting = gc.isenabled()
    gc.disable()
    large: list[bool] = []
    try:
        yield large
    finally:
        if any(large):
            gc.freeze()  # what is loaded now lives long: keep it out of every later collection
        if collecting:
            gc.enable()


def _let_the_loop_run() -> None:
    time.sleep(0)  # gives up the interpreter lock, so a waiting event loop runs now


class StateLoader:
    """Loads full and incremental gateway state from the store (runs in a worker thread)."""

    def __init__(self, sessions: sessionmaker[Session], secret_box: SecretBox) -> None:
        self.sessions = sessions
        self.secret_box = secret_box
        self.high_water = 0
        self._seen: set[int] = set()
        self._config: ConfigData | None = None
        self._retired: KeyIndex | None = None  # the index a full load replaced, to free
        self.counts = LoadCounts()

    def load_full(self, previous: GatewayState | None) -> GatewayState:
        started = time.perf_counter()
        with self.sessions() as session, _no_collections_meanwhile() as large:
            high = session.scalar(select(func.max(ChangeLog.id))) or 0
            config = load_config_data(session)
            keys = build_key_index(session, pause=_let_the_loop_run)
            large.append(len(keys) >= FREEZE_AT)
        self._config = config
        self._mark_seen_up_to(high)
        state = compile_state(config, keys, self.secret_box, previous)
        if previous is not None and previous.keys is not keys and len(previous.keys):
            self._retire(previous.keys)
        elapsed = time.perf_counter() - started
        self.counts.full_loads += 1
        self.counts.keys_loaded += len(keys) // 2
        self.counts.last_full_load_seconds = elapsed
        logger.info("loaded %d keys in %.2f s", len(keys), elapsed)
        return state

    def _mark_seen_up_to(self, high: int) -> None:
        self.high_water = max(self.high_water, high)
        self._seen = {i for i in self._seen if i > self.high_water - LOOKBACK}
        self._seen.update(range(max(self.high_water - LOOKBACK + 1, 1), self.high_water + 1))

    def poll(self, current: GatewayState) -> GatewayState | None:
        """Apply what changed since the last poll. Key changes go into ``current.keys`` in
        place; a new state is returned only when the config changed (or everything had to be
        reloaded), else None."""
        self._free_retired(current)
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
            if too_many or self._config is None:
                return self.load_full(current)
            new = self._reload_config(session, current) if changes.config else None
            if changes.subscription_ids or changes.user_ids:
                updated = load_subscriptions(
                    session,
                    subscription_ids=changes.subscription_ids,
                    user_ids=changes.user_ids,
                )
                self.counts.subscriptions_updated += current.keys.apply(updated)
        return new

    def _reload_config(self, session: Session, current: GatewayState) -> GatewayState:
        """Routes and policies from the new config, over the same key index."""
        assert self._config is not None
        config = load_config_data(session)
        gone = frozenset(self._config.product_policies) - frozenset(config.product_policies)
        if gone:  # (their subscriptions were deleted with them, without a change-log row each)
            dropped = current.keys.drop_products(gone)
            logger.info("removed the keys of %d subscriptions of deleted products", dropped)
        self._config = config
        self.counts.config_loads += 1
        return compile_state(config, current.keys, self.secret_box, current)

    def _retire(self, keys: KeyIndex) -> None:
        if self._retired is not None and self._retired is not keys:
            self._retired.dispose()
        self._retired = keys

    def _free_retired(self, current: GatewayState) -> None:
        """Free the index the last full load replaced, here in the worker thread, once the
        gateway has swapped it out (requests read ``gateway.state.keys`` afresh each time)."""
        if self._retired is not None and self._retired is not current.keys:
            self._retired.dispose()
            self._retired = None

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
