"""``tollway demo`` gives the portal a demo admin and the demo developer, shown once."""

from __future__ import annotations

from sqlalchemy import Engine

from tollway.crypto import SecretBox
from tollway.db.models import UserRole
from tollway.db.session import session_factory, transaction
from tollway.demo.setup import DEMO_ADMIN, DEMO_EMAIL, portal_lines, prepare_demo
from tollway.services import users


def test_demo_sign_ins_are_made_once_and_work(sqlite_engine: Engine) -> None:
    first = prepare_demo(sqlite_engine, SecretBox("demo-secret-0123456789"))
    logins = {email: (password, role) for email, password, role in first.new_logins}
    assert set(logins) == {DEMO_ADMIN, DEMO_EMAIL}
    assert logins[DEMO_ADMIN][1] == UserRole.admin
    with transaction(session_factory(sqlite_engine)) as session:
        for email, (password, _) in logins.items():
            assert users.authenticate(session, email, password) is not None
    printed = "\n".join(portal_lines("http://127.0.0.1:8000", first))
    assert "http://127.0.0.1:8000/portal/" in printed and logins[DEMO_ADMIN][0] in printed

    again = prepare_demo(sqlite_engine, SecretBox("demo-secret-0123456789"))
    assert again.new_logins == ()
    assert logins[DEMO_ADMIN][0] not in "\n".join(portal_lines("http://x", again))
