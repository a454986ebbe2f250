"""The gateway with its admin API over a real socket, on SQLite and PostgreSQL, with tokens."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from tests.gateway.conftest import SECRET, apply
from tests.portal.conftest import PORTAL_CONFIG
from tests.servers import serve_gateway
from tollway.db.models import AdminToken, AuditEntry, UserRole, utcnow
from tollway.db.session import session_factory, transaction
from tollway.services import admin_tokens, portal_sessions, users
from tollway.settings import Settings
from tollway.site.compose import create_gateway

API = "/admin/api/v1"


@dataclass
class Admin:
    """The served gateway, its store and one token of each kind."""

    base: str
    sessions: sessionmaker[Session]
    write: str
    read: str
    revoked: str
    expired: str
    developer_cookie: str

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base + API, headers=headers, timeout=30)

    def audit(self, **where: Any) -> list[AuditEntry]:
        with transaction(self.sessions) as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            for name, value in where.items():
                query = query.where(getattr(AuditEntry, name) == value)
            return list(session.scalars(query))

    def last_audit_id(self) -> int:
        rows = self.audit()
        return rows[-1].id if rows else 0


def make_tokens(sessions: sessionmaker[Session]) -> dict[str, str]:
    with transaction(sessions) as session:
        tokens = {
            "write": admin_tokens.create_token(session, "ci").token,
            "read": admin_tokens.create_token(session, "auditor", read_only=True).token,
            "revoked": admin_tokens.create_token(session, "old").token,
            "expired": admin_tokens.create_token(session, "brief", expires_days=1).token,
        }
        admin_tokens.revoke_token(session, "old")
        brief = session.scalar(select(AdminToken).where(AdminToken.name == "brief"))
        assert brief is not None
        brief.expires_at = utcnow() - timedelta(minutes=1)  # a day went by
    return tokens


def developer_session(sessions: sessionmaker[Session]) -> str:
    """A signed-in developer's portal cookie value (a real session row)."""
    token = secrets.token_urlsafe(32)
    with transaction(sessions) as session:
        user = users.create_user(session, "dev@example.com", role=UserRole.developer)
        portal_sessions.open_session(
            session,
            user.id,
            portal_sessions.digest_of(token),
            utcnow(),
            portal_sessions.SessionRules(3600, 3600),
        )
    return token


@pytest.fixture
def admin_env() -> dict[str, str]:
    """Environment for the served gateway (the attempt limit is high unless a test lowers it)."""
    return {"TOLLWAY_PORTAL_SIGNIN_ATTEMPTS_PER_IP": "10000"}


@pytest.fixture
def admin(
    engine: Engine, database_url: str, admin_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Admin]:
    for name, value in admin_env.items():
        monkeypatch.setenv(name, value)
    apply(engine, PORTAL_CONFIG)
    sessions = session_factory(engine)
    tokens = make_tokens(sessions)
    cookie = developer_session(sessions)
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET,  # type: ignore[arg-type]
        refresh_interval=0.2,
        usage_flush_interval=3600,
    )
    gateway = create_gateway(settings, engine=engine)
    with serve_gateway(gateway, "fast") as base:
        yield Admin(base, sessions, developer_cookie=cookie, **tokens)
