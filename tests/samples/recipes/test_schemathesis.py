"""Property tests over the recipes OpenAPI document: no 5xx, every response as documented."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tollway.samples.recipes import create_app
from tollway.samples.recipes.security import create_access_token

from .conftest import make_settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# schemathesis needs the schema when the module is collected (its ``from_fixture`` loader does
# not work with pytest 9), so the app and its SQLite file are made here; loading the document
# starts the app's lifespan, which migrates and seeds the database.
_DB_DIR = Path(tempfile.mkdtemp(prefix="recipes-schemathesis-"))
app = create_app(make_settings(f"sqlite:///{_DB_DIR}/recipes.db", seed_on_startup=True))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module", autouse=True)
def _remove_database() -> Iterator[None]:
    yield
    shutil.rmtree(_DB_DIR, ignore_errors=True)


@schema.parametrize()
@hypothesis.settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_documented_responses(case: schemathesis.Case) -> None:
    # Signed in as the seeded superuser (user 1), so the protected operations are reached too.
    token = create_access_token(1, app.state.token_secret, timedelta(hours=1))
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
