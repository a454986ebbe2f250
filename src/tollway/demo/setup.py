"""Prepare the demo store: migrate, apply the demo config, ensure the demo developer's key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tollway.config.apply import apply_config
from tollway.config.loader import load_config
from tollway.crypto import SecretBox
from tollway.db.migrate import upgrade
from tollway.db.models import Subscription, SubscriptionState, User, UserRole
from tollway.db.session import session_factory, transaction
from tollway.services.passwords import hash_password
from tollway.services.subscriptions import create_subscription, get_product, regenerate_key
from tollway.services.users import create_user, find_user

DEMO_EMAIL = "demo@example.com"
DEMO_ADMIN = "admin@example.com"
DEMO_PRODUCT = "starter"
DATABASE_FILE = "tollway-demo.db"
SECRET_FILE = "tollway-demo.secret"  # noqa: S105 (a file name, not a secret)


@dataclass(frozen=True)
class DemoKey:
    email: str
    subscription_id: int
    key: str
    # Portal sign-ins (e-mail, password, role) made by this run: shown once, stored as hashes.
    new_logins: tuple[tuple[str, str, str], ...] = ()


def demo_secret_key(directory: Path) -> str:
    """The demo's TOLLWAY_SECRET_KEY, made once and kept beside its database."""
    path = directory / SECRET_FILE
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_config_text() -> str:
    return (files("tollway.demo") / "tollway-demo.yaml").read_text()


def prepare_demo(engine: Engine, secret_box: SecretBox) -> DemoKey:
    """Make the store ready for the demo; returns a freshly regenerated, working demo key.

    Only digests are stored, so the previous run's key cannot be shown again: each run
    regenerates the demo subscription's primary key (the secondary key is left alone).
    """
    upgrade(engine)
    sessions = session_factory(engine)
    config = load_config(demo_config_text(), source="tollway-demo.yaml", env={})
    apply_config(sessions, config, secret_box=secret_box)
    with transaction(sessions) as session:
        user = find_user(session, DEMO_EMAIL) or create_user(
            session, DEMO_EMAIL, name="Demo Developer", role=UserRole.developer
        )
        product = get_product(session, DEMO_PRODUCT)
        subscription = session.scalar(
            select(Subscription).where(
                Subscription.user_id == user.id,
                Subscription.product_id == product.id,
                Subscription.state == SubscriptionState.active,
            )
        )
        logins = portal_logins(session, user)
        if subscription is None:
            issued = create_subscription(session, user, product, name="Demo subscription")
            return DemoKey(user.email, issued.subscription.id, issued.primary, logins)
        key = regenerate_key(session, subscription, "primary")
        return DemoKey(user.email, subscription.id, key, logins)


def portal_logins(session: Session, developer: User) -> tuple[tuple[str, str, str], ...]:
    """Give the demo admin and developer portal passwords, once (only hashes are kept)."""
    made = []
    admin = find_user(session, DEMO_ADMIN) or create_user(
        session, DEMO_ADMIN, name="Demo Admin", role=UserRole.admin
    )
    for user in (admin, developer):
        if user.password_hash is None:
            password = secrets.token_urlsafe(12)
            user.password_hash = hash_password(password)
            made.append((user.email, password, str(user.role)))
    return tuple(made)


def portal_lines(base: str, demo: DemoKey) -> list[str]:
    """What ``tollway demo`` prints about the portal; passwords only on the run that made them."""
    lines = [f"Developer portal: {base}/portal/"]
    if not demo.new_logins:
        return [*lines, f"  sign-ins for {DEMO_ADMIN} and {demo.email} were shown on the first run"]
    lines += [
        f"  {role:9}  {email}  password: {password}" for email, password, role in demo.new_logins
    ]
    return [*lines, "  (shown this once: only password hashes are kept)"]


def demo_banner(base: str, demo_key: DemoKey) -> str:
    """What ``tollway demo`` prints once its socket accepts connections: key, curl line, portal."""
    return "\n".join(
        [
            "",
            f"Tollway demo ready on {base}",
            "",
            f"  demo developer:   {demo_key.email}",
            f"  subscription id:  {demo_key.subscription_id}",
            f"  primary key:      {demo_key.key}",
            "  (a new key is issued on every run; the previous run's key stops working)",
            "",
            "Try it:",
            f'  curl -H "X-API-Key: {demo_key.key}" "{base}/names/generate_name?starts_with=n"',
            f"  API docs: {base}/docs  (names API: {base}/docs/names)",
            "",
            *portal_lines(base, demo_key),
            "",
            "Press Ctrl+C to stop.",
            "",
        ]
    )
