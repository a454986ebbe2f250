"""/docs cannot be framed and documents the gateway's own answers; the webhook sample calls back
only port 443 of allowed hosts and never echoes input in its 422s (issue 9, low items).

Every case goes through the gateway over real sockets, on both transports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.samples.test_webhook import CallbackTarget, payload
from tollway.samples.webhook import WebhookSettings, create_app
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..gateway.conftest import SECRET, apply
from ..servers import serve_gateway, serve_in_thread

PROBLEM = "application/problem+json"


@pytest.fixture
def docs_gateway(sqlite_engine: Engine, sqlite_url: str, transport: str) -> Iterator[str]:
    """A gateway with the keyed names sample (it publishes an OpenAPI document)."""
    config = {
        "backends": {"names": {"app": "tollway.samples.names:app"}},
        "apis": {"names": {"path": "/names", "backend": "names", "title": "Names"}},
        "products": {"starter": {"apis": ["names"]}},
    }
    apply(sqlite_engine, config)
    settings = Settings(database_url=sqlite_url, secret_key=SECRET)  # type: ignore[arg-type]
    with serve_gateway(create_gateway(settings, engine=sqlite_engine), transport) as base:
        yield base


@pytest.mark.parametrize(
    "path",
    ["/docs", "/docs/names", "/docs/names/openapi.json", "/docs/-/tollway/docs.css", "/docs/nope"],
)
def test_docs_pages_cannot_be_framed_by_another_site(docs_gateway: str, path: str) -> None:
    response = httpx.get(f"{docs_gateway}{path}")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_openapi_documents_the_gateways_own_answers(docs_gateway: str) -> None:
    doc = httpx.get(f"{docs_gateway}/docs/names/openapi.json").json()
    refused = httpx.get(f"{docs_gateway}/names/generate_name")
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert operations
    for operation in operations:
        responses = operation["responses"]
        for code in ("400", "401", "403", "413", "429"):
            assert PROBLEM in responses[code]["content"], (code, responses)
        assert "Retry-After" in responses["429"]["headers"]
        assert refused.json()["type"] in responses["401"]["description"]
    assert refused.status_code == 401
    assert refused.headers["content-type"] == PROBLEM


@pytest.fixture
def callback_target() -> Iterator[CallbackTarget]:
    """A local service on an allowed host (127.0.0.1), but not on port 443."""
    target = CallbackTarget()
    with serve_in_thread(target, lifespan="off") as base:
        target.base = base
        yield target


@contextmanager
def webhook_gateway(
    engine: Engine, database_url: str, transport: str, hook: WebhookSettings
) -> Iterator[str]:
    """The webhook sample over a socket, behind the gateway at /webhook (open, as a test)."""
    with serve_in_thread(create_app(hook)) as backend:
        api = {"path": "/webhook", "backend": "webhook", "subscription_required": False}
        apply(engine, {"backends": {"webhook": {"url": backend}}, "apis": {"webhook": api}})
        settings = Settings(database_url=database_url, secret_key=SECRET)  # type: ignore[arg-type]
        with serve_gateway(create_gateway(settings, engine=engine), transport) as base:
            yield base


def hook_settings(**changes: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "trusted_pushers": ["account1"],
        "callback_hosts": ["127.0.0.1"],
        "callback_https_only": False,
        **changes,
    }
    return WebhookSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_webhook_callback_cannot_reach_another_port_of_an_allowed_host(
    sqlite_engine: Engine, sqlite_url: str, transport: str, callback_target: CallbackTarget
) -> None:
    with webhook_gateway(sqlite_engine, sqlite_url, transport, hook_settings()) as base:
        response = httpx.post(f"{base}/webhook/", json=payload(callback_target.url()))
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/-/problems/callback-not-allowed"
    assert "port" in response.json()["detail"]
    assert callback_target.received == []


def test_webhook_422_is_a_problem_that_does_not_echo_the_input(
    sqlite_engine: Engine, sqlite_url: str, transport: str
) -> None:
    body = payload("https://registry.hub.docker.com/u/a/b/hook/1/")
    body["push_data"]["pusher"] = ["<script>alert('echoed-marker')</script>"]
    with webhook_gateway(sqlite_engine, sqlite_url, transport, hook_settings()) as base:
        response = httpx.post(f"{base}/webhook/", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/-/problems/invalid-payload"
    assert "push_data.pusher" in response.json()["detail"]
    assert "echoed-marker" not in response.text
