"""Property tests of the charts sample over its own OpenAPI document (schemathesis).

For generated queries, valid and invalid, the API must never answer 5xx, and every answer must
match what the document declares: status code, content type, headers and the problem schema.
``positive_data_acceptance`` is left out on purpose: a schema-valid query can still be refused
(labels count, all-zero pie, unknown glyph), which the schema cannot express.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as openapi_checks

from tollway.samples.charts import create_app

# Explicit examples, then random generation (valid and invalid queries). The coverage phase is
# off: it walks every boundary of every parameter, rendering ~100 charts per operation (10+ s),
# and test_charts.py already pins those boundaries (30/31 characters, 50/51 items, ...).
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"examples": {"enabled": True}, "coverage": {"enabled": False}}}
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(), config=CONFIG)

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


@schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
