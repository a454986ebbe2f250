"""Subscriptions and their keys: create, regenerate, suspend, activate, cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tollway.db.models import ChangeKind, Product, Subscription, SubscriptionState, User
from tollway.errors import Conflict, NotFound, UserError
from tollway.keys import display_prefix, generate_key, key_digest
from tollway.services.audit import record
from tollway.services.changes import record_change

KeySlot = Literal["primary", "secondary"]


@dataclass(frozen=True)
class IssuedKeys:
    """Keys in full, returned once when a subscription is created; never stored."""

    subscription: Subscription
    primary: str
    secondary: str


def get_product(session: Session, name: str) -> Product:
    product = session.scalar(select(Product).where(Product.name == name))
    if product is None:
        known = ", ".join(session.scalars(select(Product.name).order_by(Product.name)))
        raise NotFound(f"no product named {name!r} (products: {known or 'none yet'})")
    return product


def get_subscription(session: Session, subscription_id: int) -> Subscription:
    subscription = session.get(Subscription, subscription_id)
    if subscription is None:
        raise NotFound(f"no subscription with id {subscription_id}")
    return subscription


def create_subscription(
    session: Session,
    user: User,
    product: Product,
    *,
    name: str = "",
    state: SubscriptionState | None = None,
) -> IssuedKeys:
    """Subscribe ``user`` to ``product``; active at once unless the product needs approval."""
    if state is None:
        state = (
            SubscriptionState.submitted if product.approval_required else SubscriptionState.active
        )
    primary, secondary = generate_key(), generate_key()
    subscription = Subscription(
        user=user,
        product=product,
        name=name or f"{product.name} ({user.email})",
        state=state,
        primary_digest=key_digest(primary),
        primary_prefix=display_prefix(primary),
        secondary_digest=key_digest(secondary),
        secondary_prefix=display_prefix(secondary),
    )
    session.add(subscription)
    session.flush()
    record_change(session, ChangeKind.subscription, subscription.id)
    record(
        session, "subscription", subscription.id, "create", after=subscription_view(subscription)
    )
    return IssuedKeys(subscription, primary, secondary)


def subscription_view(subscription: Subscription) -> dict[str, object]:
    """What the audit log keeps of a subscription (no key material, not even prefixes)."""
    return {
        "user": subscription.user.email,
        "product": subscription.product.name,
        "name": subscription.name,
        "state": str(subscription.state),
    }


def regenerate_key(session: Session, subscription: Subscription, slot: KeySlot) -> str:
    """Replace one of the two keys; the other keeps working (rotation without downtime)."""
    key = generate_key()
    if slot == "primary":
        subscription.primary_digest = key_digest(key)
        subscription.primary_prefix = display_prefix(key)
    elif slot == "secondary":
        subscription.secondary_digest = key_digest(key)
        subscription.secondary_prefix = display_prefix(key)
    else:
        raise UserError(f"key slot must be 'primary' or 'secondary', not {slot!r}")
    session.flush()
    record_change(session, ChangeKind.subscription, subscription.id)
    record(session, "subscription", subscription.id, "regenerate-key", slot=slot)
    return key


_TRANSITIONS: dict[SubscriptionState, set[SubscriptionState]] = {
    SubscriptionState.active: {SubscriptionState.submitted, SubscriptionState.suspended},
    SubscriptionState.suspended: {SubscriptionState.active},
    SubscriptionState.cancelled: {
        SubscriptionState.submitted,
        SubscriptionState.active,
        SubscriptionState.suspended,
    },
    SubscriptionState.rejected: {SubscriptionState.submitted},
}


def set_subscription_state(
    session: Session, subscription: Subscription, state: SubscriptionState
) -> None:
    """Move a subscription to ``state`` when that transition makes sense."""
    current = SubscriptionState(subscription.state)
    if current == state:
        return
    if current not in _TRANSITIONS.get(state, set()):
        raise Conflict(f"subscription {subscription.id} is {current}; it cannot become {state}")
    subscription.state = state
    session.flush()
    record_change(session, ChangeKind.subscription, subscription.id)
    approved = current == SubscriptionState.submitted and state == SubscriptionState.active
    action = "approve" if approved else _ACTIONS.get(state, str(state))
    record(session, "subscription", subscription.id, action, {"state": current}, {"state": state})


_ACTIONS = {
    SubscriptionState.active: "activate",
    SubscriptionState.suspended: "suspend",
    SubscriptionState.cancelled: "cancel",
    SubscriptionState.rejected: "reject",
}


def subscriptions_of(session: Session, user: User) -> list[Subscription]:
    """A user's subscriptions, newest first (cancelled and rejected ones included)."""
    return list(
        session.scalars(
            select(Subscription)
            .where(Subscription.user_id == user.id)
            .order_by(Subscription.id.desc())
        )
    )


def list_subscriptions(
    session: Session,
    state: SubscriptionState | None = None,
    *,
    user_id: int | None = None,
    product_id: int | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[Subscription]:
    """All subscriptions, optionally only those in ``state`` (of a user, of a product), oldest
    first; ``after_id`` and ``limit`` page through them."""
    query = select(Subscription).where(Subscription.id > after_id).order_by(Subscription.id)
    if state is not None:
        query = query.where(Subscription.state == state)
    if user_id is not None:
        query = query.where(Subscription.user_id == user_id)
    if product_id is not None:
        query = query.where(Subscription.product_id == product_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def owned_subscription(session: Session, user: User, subscription_id: int) -> Subscription:
    """The user's own subscription; someone else's is reported as missing, not forbidden."""
    subscription = session.get(Subscription, subscription_id)
    if subscription is None or subscription.user_id != user.id:
        raise NotFound(f"no subscription with id {subscription_id}")
    return subscription
