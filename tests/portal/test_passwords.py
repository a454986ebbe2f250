"""Passwords set outside the portal (the service a CLI command can call)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tollway.db.models import UserRole
from tollway.db.session import session_factory, transaction
from tollway.errors import UserError
from tollway.services import users


def test_set_password_lets_a_cli_made_user_sign_in(sqlite_engine: Engine) -> None:
    sessions = session_factory(sqlite_engine)
    with transaction(sessions) as session:
        user = users.create_user(session, "ops@example.com", role=UserRole.admin)
        users.set_password(session, user, "a long admin passphrase")
    with transaction(sessions) as session:
        assert users.authenticate(session, "ops@example.com", "a long admin passphrase")


def test_set_password_refuses_a_weak_one(sqlite_engine: Engine) -> None:
    with transaction(session_factory(sqlite_engine)) as session:
        user = users.create_user(session, "weak@example.com")
        with pytest.raises(UserError, match="at least 12 characters"):
            users.set_password(session, user, "short")
