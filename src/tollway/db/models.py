"""SQLAlchemy models for Tollway's domain (see docs/architecture.md).

Config entities (backends, named values, APIs, products) are managed declaratively by
``tollway apply``; users, subscriptions and usage are runtime data. Every write that a running
gateway must notice also appends a row to ``change_log`` in the same transaction.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Versioned:
    """A row with a version, raised by every ORM update (the admin API's ETag).

    SQLAlchemy writes ``UPDATE ... WHERE version = <the version read>``, so of two transactions
    that read the same version, the second to write fails (``StaleDataError``): nobody
    overwrites a change they did not see.
    """

    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Backend(Versioned, Timestamped, Base):
    """Where an API's requests go: an HTTP(S) base URL or an in-process ASGI app."""

    __tablename__ = "backends"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(String(2000))
    app: Mapped[str | None] = mapped_column(String(300))
    connect_timeout: Mapped[float] = mapped_column(Float, default=5.0)
    read_timeout: Mapped[float] = mapped_column(Float, default=30.0)
    preserve_host: Mapped[bool] = mapped_column(Boolean, default=False)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A pool of instances and how calls reach them (docs/gateway.md, "Backend pools").
    targets: Mapped[list[Any]] = mapped_column(default=list)
    balance: Mapped[str] = mapped_column(String(30), default="round-robin")
    health_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    circuit_breaker: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    tls: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    max_idle_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    max_requests: Mapped[int | None] = mapped_column(Integer, default=None)


class NamedValue(Versioned, Timestamped, Base):
    """A named string usable as ``{{name}}``; secret ones are stored encrypted."""

    __tablename__ = "named_values"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    value: Mapped[str] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)


class Api(Versioned, Timestamped, Base):
    """A path prefix on the gateway, fronting one backend."""

    __tablename__ = "apis"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(String(300), unique=True)
    backend_id: Mapped[int] = mapped_column(ForeignKey("backends.id", ondelete="RESTRICT"))
    subscription_required: Mapped[bool] = mapped_column(Boolean, default=True)
    key_header: Mapped[str] = mapped_column(String(100), default="X-API-Key")
    key_query: Mapped[str] = mapped_column(String(100), default="subscription-key")
    openapi: Mapped[str | None] = mapped_column(String(500), default="/openapi.json")
    operations: Mapped[list[Any]] = mapped_column(default=list)
    policies: Mapped[list[Any]] = mapped_column(default=list)
    published: Mapped[bool] = mapped_column(Boolean, default=True)

    backend: Mapped[Backend] = relationship(lazy="joined")


class Product(Versioned, Timestamped, Base):
    """A bundle of APIs that developers subscribe to."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    published: Mapped[bool] = mapped_column(Boolean, default=True)
    policies: Mapped[list[Any]] = mapped_column(default=list)

    apis: Mapped[list[Api]] = relationship(secondary="product_apis", lazy="selectin")


class ProductApi(Base):
    __tablename__ = "product_apis"
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    api_id: Mapped[int] = mapped_column(ForeignKey("apis.id", ondelete="CASCADE"), primary_key=True)


GLOBAL_POLICIES = "global_policies"
"""The :class:`GatewaySetting` row holding the policy list that applies to every API."""


class GatewaySetting(Versioned, Base):
    """Gateway-wide configuration documents, such as the global policy list."""

    __tablename__ = "gateway_settings"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[list[Any]] = mapped_column(default=list)


class UserRole(enum.StrEnum):
    developer = "developer"
    admin = "admin"


class UserState(enum.StrEnum):
    active = "active"
    blocked = "blocked"


class User(Versioned, Timestamped, Base):
    """A developer (API consumer) or an administrator."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20), default=UserRole.developer)
    state: Mapped[str] = mapped_column(String(20), default=UserState.active)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)


class UserIdentity(Base):
    """A sign-in identity at an OpenID Connect provider (``iss`` + ``sub``) linked to a user.

    ``provider`` is the configured provider's name, kept for display. ``issuer`` is NULL only
    on identities made before migration 0004; the next sign-in through that provider fills it.
    """

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str | None] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PortalSession(Base):
    """A signed-in browser. Its cookie holds a random token; only the token's SHA-256 digest is
    stored, so a copy of the database signs nobody in. Deleting the row signs the browser out."""

    __tablename__ = "portal_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    address: Mapped[str] = mapped_column(String(64), default="")


class SubscriptionState(enum.StrEnum):
    submitted = "submitted"
    active = "active"
    suspended = "suspended"
    cancelled = "cancelled"
    rejected = "rejected"


class Subscription(Versioned, Timestamped, Base):
    """A user's subscription to a product, holding a primary and a secondary key.

    Keys are stored only as SHA-256 digests (hex) plus a short display prefix.
    """

    __tablename__ = "subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20), default=SubscriptionState.active)
    primary_digest: Mapped[str] = mapped_column(String(64), unique=True)
    primary_prefix: Mapped[str] = mapped_column(String(20))
    secondary_digest: Mapped[str] = mapped_column(String(64), unique=True)
    secondary_prefix: Mapped[str] = mapped_column(String(20))

    user: Mapped[User] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")


LATENCY_BUCKETS = 18
"""Latency bucket ``i`` counts calls that took ``[2**(i-2), 2**(i-1))`` ms; bucket 0 is
``[0, 0.5)`` ms and bucket 17 everything from 32 768 ms (about 33 s) on."""
LATENCY_BOUNDS: tuple[float, ...] = tuple(2.0 ** (i - 2) for i in range(1, LATENCY_BUCKETS))
"""The lower bound (ms) of buckets 1..17, i.e. the upper bound of buckets 0..16."""
LATENCY_COLUMNS = tuple(f"latency_{i}" for i in range(LATENCY_BUCKETS))


def latency_bucket(latency_ms: float) -> int:
    """The log-spaced (powers of two) latency bucket of one call: a float exponent, no search."""
    if latency_ms < 0.5:
        return 0
    return min(math.frexp(latency_ms)[1] + 1, LATENCY_BUCKETS - 1)


def _latency_column() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default="0")


class Usage(Base):
    """Calls per subscription x API x minute x status class (1..5), with byte and latency sums
    and the calls per latency bucket (``latency_0`` ... ``latency_17``, see
    :func:`latency_bucket`), from which the portal estimates latency percentiles.

    ``subscription_id`` is 0 for calls to open APIs made without a key. No foreign keys: usage is
    a fact table that outlives deleted subscriptions and APIs. Rows written before migration
    0006 have no bucket counts (all 0). A WebSocket session is one call of class 1 (101) whose
    bytes are the messages' payloads and whose ``messages_in``/``messages_out`` count them.
    """

    __tablename__ = "usage"
    subscription_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # indexed for analytics across all traffic, which filter on time alone (migration 0006)
    minute: Mapped[datetime] = mapped_column(DateTime, primary_key=True, index=True)
    status_class: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    latency_0: Mapped[int] = _latency_column()
    latency_1: Mapped[int] = _latency_column()
    latency_2: Mapped[int] = _latency_column()
    latency_3: Mapped[int] = _latency_column()
    latency_4: Mapped[int] = _latency_column()
    latency_5: Mapped[int] = _latency_column()
    latency_6: Mapped[int] = _latency_column()
    latency_7: Mapped[int] = _latency_column()
    latency_8: Mapped[int] = _latency_column()
    latency_9: Mapped[int] = _latency_column()
    latency_10: Mapped[int] = _latency_column()
    latency_11: Mapped[int] = _latency_column()
    latency_12: Mapped[int] = _latency_column()
    latency_13: Mapped[int] = _latency_column()
    latency_14: Mapped[int] = _latency_column()
    latency_15: Mapped[int] = _latency_column()
    latency_16: Mapped[int] = _latency_column()
    latency_17: Mapped[int] = _latency_column()
    # WebSocket sessions (status class 1): messages each way (migration 0008)
    messages_in: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    messages_out: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ChangeKind(enum.StrEnum):
    config = "config"
    subscription = "subscription"
    user = "user"


class ChangeLog(Base):
    """Append-only log that running gateways poll to pick up changes without a restart."""

    __tablename__ = "change_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AdminToken(Base):
    """A bearer token for the admin API (``twa_...``); only its SHA-256 digest is stored."""

    __tablename__ = "admin_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditEntry(Base):
    """One change, from any door: when, who (``token:NAME``, ``user:EMAIL``, ``cli``), from
    where, what (entity, id, action) and the fields before/after, secrets masked.

    Append-only: nothing in Tollway updates or deletes these rows.
    """

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(400), index=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    entity: Mapped[str] = mapped_column(String(40), index=True)
    entity_id: Mapped[str] = mapped_column(String(400), default="")
    action: Mapped[str] = mapped_column(String(40))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
