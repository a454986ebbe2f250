"""Many users and subscriptions, written straight into Tollway's schema, fast.

``bench/scale.py`` fills a store with up to millions of subscriptions this way, and the tests of
a large key index (tests/gateway/test_key_scale.py) with tens of thousands. Going through the
services would take minutes per million (a random key and a transaction per subscription), so
the rows are written in bulk: PostgreSQL's ``COPY``, SQLite's ``executemany``. The keys are
derived from a tag and a number, so a caller can use any of them without storing them; they are
only for load tests, and the rows carry no change-log entry (start or reload the gateway after).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from tollway.db.models import Product, Subscription, SubscriptionState, User, UserState, utcnow
from tollway.db.session import session_factory
from tollway.keys import display_prefix

USER_COLUMNS = ("email", "name", "role", "state", "email_verified", "created_at", "updated_at")
SUBSCRIPTION_COLUMNS = (
    "user_id",
    "product_id",
    "name",
    "state",
    "primary_digest",
    "primary_prefix",
    "secondary_digest",
    "secondary_prefix",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Population:
    """``count`` subscriptions to ``product``, ``per_user`` to each user; numbered from 0."""

    tag: str
    count: int
    per_user: int

    def key(self, number: int, slot: str = "primary") -> str:
        return f"tw_{self.tag}_{number}_{slot[0]}"

    def email(self, user_number: int) -> str:
        return f"{self.tag}-{user_number}@scale.example"

    def subscription_id(self, engine: Engine, number: int) -> int:
        digest = hashlib.sha256(self.key(number).encode()).hexdigest()
        with session_factory(engine)() as session:
            query = select(Subscription.id).where(Subscription.primary_digest == digest)
            found = session.scalar(query)
        assert found is not None, f"subscription {number} of {self.tag} is not in the store"
        return found


def populate(
    engine: Engine, product: str, count: int, *, tag: str = "scale", per_user: int = 2
) -> Population:
    """Insert ``count`` active subscriptions (two keys each) of new users to ``product``."""
    population = Population(tag, count, per_user)
    users = -(-count // per_user)
    now = utcnow()
    with session_factory(engine)() as session:
        product_id = session.scalar(select(Product.id).where(Product.name == product))
    assert product_id is not None, f"no product {product!r}: apply a config first"
    user_rows = (
        (population.email(n), "", "developer", UserState.active, False, now, now)
        for n in range(users)
    )
    _insert(engine, "users", USER_COLUMNS, user_rows)
    with session_factory(engine)() as session:
        found = session.execute(
            select(User.id, User.email).where(User.email.like(f"{tag}-%@scale.example"))
        )
        user_ids = {email: uid for uid, email in found}
    _insert(
        engine,
        "subscriptions",
        SUBSCRIPTION_COLUMNS,
        _subscription_rows(population, product_id, user_ids, now),
    )
    return population


def _subscription_rows(
    population: Population, product_id: int, user_ids: dict[str, int], now: Any
) -> Iterator[tuple[Any, ...]]:
    sha256 = hashlib.sha256
    for number in range(population.count):
        primary, secondary = population.key(number, "primary"), population.key(number, "secondary")
        yield (
            user_ids[population.email(number // population.per_user)],
            product_id,
            f"{population.tag} {number}",
            SubscriptionState.active,
            sha256(primary.encode()).hexdigest(),
            display_prefix(primary),
            sha256(secondary.encode()).hexdigest(),
            display_prefix(secondary),
            now,
            now,
        )


def _insert(engine: Engine, table: str, columns: tuple[str, ...], rows: Iterable[Any]) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if engine.dialect.name == "postgresql":
            statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with cursor.copy(statement) as copy:  # (psycopg's cursor)
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                rows,
            )
        raw.commit()
    finally:
        raw.close()
