"""Property tests over the admin API's own OpenAPI document, with a read-write token: no 5xx for
any generated request, and every answer as documented (status, content type, body schema)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.conftest import SECRET, apply
from tests.portal.conftest import PORTAL_CONFIG
from tollway.admin import PREFIX, create_admin_api
from tollway.db.migrate import upgrade
from tollway.db.session import make_engine, session_factory, transaction
from tollway.services import admin_tokens, subscriptions, users
from tollway.settings import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples and random generation; the coverage phase (every boundary of every parameter of
# ~40 operations) would take minutes.
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"examples": {"enabled": True}, "coverage": {"enabled": False}}}
)

# schemathesis needs the schema when the module is collected, so the store is made here.
_DIR = Path(tempfile.mkdtemp(prefix="admin-schemathesis-"))
_URL = f"sqlite:///{_DIR}/tollway.db"
_ENGINE = make_engine(_URL)
upgrade(_ENGINE)
apply(_ENGINE, PORTAL_CONFIG)
with transaction(session_factory(_ENGINE)) as _session:
    TOKEN = admin_tokens.create_token(_session, "fuzz").token
    _user = users.create_user(_session, "dev@example.com")
    subscriptions.create_subscription(
        _session, _user, subscriptions.get_product(_session, "starter")
    )
app = create_admin_api(
    Settings(database_url=_URL, secret_key=SECRET),  # type: ignore[arg-type]
    session_factory(_ENGINE),
)
schema = schemathesis.openapi.from_asgi(f"{PREFIX}/openapi.json", app, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def _remove_store() -> Iterator[None]:
    yield
    _ENGINE.dispose()
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@hypothesis.settings(
    max_examples=5,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_documented_answers(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
