"""Load what the gateway serves from the store: routes (APIs + backends) and the key index.

Config rows are few and read in one go; subscriptions may be millions and are streamed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tollway.db.models import (
    GLOBAL_POLICIES,
    Api,
    Backend,
    GatewaySetting,
    NamedValue,
    Product,
    ProductApi,
    Subscription,
    SubscriptionState,
    User,
    UserState,
)
from tollway.gateway.snapshot.keyindex import IndexedSubscription, KeyIndex


@dataclass(frozen=True)
class ConfigData:
    """Plain copies of the config rows, detached from any session."""

    apis: tuple[Api, ...]
    backends: dict[int, Backend]
    named_values: dict[str, tuple[str, bool]]  # name -> (stored value, secret)
    products_of_api: dict[int, frozenset[int]] = field(default_factory=dict)
    product_policies: dict[int, tuple[str, list[Any]]] = field(default_factory=dict)  # id -> name
    global_policies: list[Any] = field(default_factory=list)


def load_config_data(session: Session) -> ConfigData:
    apis = tuple(session.scalars(select(Api).order_by(Api.id)))
    backends = {b.id: b for b in session.scalars(select(Backend))}
    named = {nv.name: (nv.value, nv.secret) for nv in session.scalars(select(NamedValue))}
    products_of: dict[int, set[int]] = defaultdict(set)
    for product_id, api_id in session.execute(select(ProductApi.product_id, ProductApi.api_id)):
        products_of[api_id].add(product_id)
    product_policies = {
        pid: (name, list(policies or []))
        for pid, name, policies in session.execute(
            select(Product.id, Product.name, Product.policies)
        )
    }
    setting = session.get(GatewaySetting, GLOBAL_POLICIES)
    session.expunge_all()
    return ConfigData(
        product_policies=product_policies,
        global_policies=list(setting.value or []) if setting else [],
        apis=apis,
        backends=backends,
        named_values=named,
        products_of_api={aid: frozenset(pids) for aid, pids in products_of.items()},
    )


_SUBSCRIPTION_COLUMNS = (
    Subscription.id,
    Subscription.user_id,
    Subscription.product_id,
    Subscription.state,
    User.state,
    Subscription.primary_digest,
    Subscription.secondary_digest,
)


def _indexed(rows: Iterable[tuple[int, int, int, str, str, str, str]]) -> list[IndexedSubscription]:
    return [
        IndexedSubscription(
            subscription_id=sid,
            user_id=uid,
            product_id=pid,
            active=state == SubscriptionState.active and user_state == UserState.active,
            digests=(bytes.fromhex(primary), bytes.fromhex(secondary)),
        )
        for sid, uid, pid, state, user_state, primary, secondary in rows
    ]


BATCH = 5000
"""Rows per fetch of a full key load: small enough that no single step holds the interpreter
for long (the event loop runs between batches), large enough to keep round trips few."""


def stream_active_subscriptions(session: Session, batch: int = BATCH) -> Iterator[Sequence[Any]]:
    """(id, user id, product id, primary digest, secondary digest) of every active subscription
    of an active user, ``batch`` rows at a time, so a million rows are never in memory at once.

    Blocked users are few: they are read first and skipped here, which is cheaper than joining
    every subscription to its user. The rows come straight from the driver's cursor (a
    server-side one on PostgreSQL): SQLAlchemy's result rows cost a third more per row here."""
    blocked = frozenset(session.scalars(select(User.id).where(User.state != UserState.active)))
    query = select(
        Subscription.id,
        Subscription.user_id,
        Subscription.product_id,
        Subscription.primary_digest,
        Subscription.secondary_digest,
    ).where(Subscription.state == SubscriptionState.active)
    connection = session.connection()
    sql = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
    driver: Any = connection.connection.dbapi_connection
    server_side = connection.dialect.name == "postgresql"
    cursor = driver.cursor(name="tollway_keys") if server_side else driver.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(batch):
            yield [row for row in rows if row[1] not in blocked] if blocked else rows
    finally:
        cursor.close()


def highest_subscription_id(session: Session) -> int:
    return session.scalar(select(func.max(Subscription.id))) or 0


def build_key_index(session: Session, *, pause: Callable[[], None] | None = None) -> KeyIndex:
    """The key index of every active subscription, built batch by batch; ``pause()`` runs
    between batches (the loader lets the event loop's thread run there)."""
    index = KeyIndex(highest_subscription_id(session))
    for rows in stream_active_subscriptions(session):
        index.add_rows(rows)
        if pause is not None:
            pause()
    return index


def load_subscriptions(
    session: Session, *, subscription_ids: Iterable[int] = (), user_ids: Iterable[int] = ()
) -> list[IndexedSubscription]:
    """These subscriptions (any state), plus all of these users', for an incremental update."""
    found: list[IndexedSubscription] = []
    base = select(*_SUBSCRIPTION_COLUMNS).join(User, User.id == Subscription.user_id)
    if ids := sorted(set(subscription_ids)):
        found += _indexed(session.execute(base.where(Subscription.id.in_(ids))))
    if uids := sorted(set(user_ids)):
        found += _indexed(session.execute(base.where(Subscription.user_id.in_(uids))))
    seen = {sub.subscription_id for sub in found}
    # A deleted subscription is simply gone: report it inactive so its keys leave the index.
    for sid in set(subscription_ids) - seen:
        found.append(IndexedSubscription(sid, 0, 0, False, ()))
    return found


ConfigLoader = Callable[[Session], ConfigData]
