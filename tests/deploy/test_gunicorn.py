"""The documented gunicorn command line, run for real: gunicorn's process manager with
Tollway's worker class (uvicorn's, running Tollway's protocol) serving
``tollway.asgi:create_app()``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.security.rawhttp import exchange
from tests.servers import free_port, tollway_env
from tollway.config.apply import apply_config
from tollway.config.loader import load_config
from tollway.crypto import SecretBox
from tollway.db.migrate import upgrade
from tollway.db.session import make_engine, session_factory, transaction
from tollway.services import subscriptions, users

from .helpers import CLEAN_EXIT, process_env, running, stop, wait_http

SECRET = "test-secret-key-0123456789"
CONFIG = """
backends:
  echo:
    app: tollway.samples.echo:app
apis:
  echo:
    path: /echo
    backend: echo
products:
  starter:
    apis: [echo]
"""


def gunicorn_command(port: int) -> list[str]:
    """As in docs/deploy.md, with the address and worker count of this test."""
    return [
        "gunicorn",
        "-k",
        "tollway.gunicorn_worker.Worker",
        "tollway.asgi:create_app()",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "2",
        # Tollway applies TOLLWAY_TRUSTED_PROXIES itself; uvicorn must not rewrite the peer.
        "--forwarded-allow-ips",
        "",
        "--graceful-timeout",
        "30",
    ]


def prepare_store(database_url: str) -> str:
    engine = make_engine(database_url)
    try:
        upgrade(engine)  # `tollway migrate` before starting gunicorn
        sessions = session_factory(engine)
        config = load_config(CONFIG, source="test", env={})
        apply_config(sessions, config, secret_box=SecretBox(SECRET))
        with transaction(sessions) as session:
            user = users.create_user(session, "dev@example.com")
            product = subscriptions.get_product(session, "starter")
            return subscriptions.create_subscription(session, user, product).primary
    finally:
        engine.dispose()


@pytest.mark.slow
def test_gunicorn_with_uvicorn_workers_serves_the_gateway(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    key = prepare_store(database_url)
    port = free_port()
    extra = {"TOLLWAY_REDIS_URL": REDIS_URL} if REDIS_URL else {}
    env = process_env(tollway_env(database_url, **extra))
    base = f"http://127.0.0.1:{port}"
    with running(gunicorn_command(port), env, cwd=tmp_path) as process:
        wait_http(f"{base}/-/ready", process, timeout=60)
        response = httpx.get(
            f"{base}/echo/hello",
            headers={"X-API-Key": key, "X-Forwarded-For": "198.51.100.9"},
        )
        refused = httpx.get(f"{base}/echo/hello")
        # Tollway's protocol runs in the workers: its request-head limits apply.
        oversized = exchange(
            base, b"GET /echo/hello HTTP/1.1\r\nHost: g\r\nX-Big: %b\r\n\r\n" % (b"a" * 10_000)
        )
        code, output = stop(process)
    assert response.status_code == 200, response.text
    headers = dict(response.json()["headers"])
    # No proxy is trusted, so the forged address is not believed by uvicorn or Tollway.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert refused.status_code == 401
    assert oversized.status == 431
    assert oversized.problem()["type"] == "/-/problems/request-head-too-large"
    assert code in CLEAN_EXIT, output
    assert output.count("Booting worker") == 2, output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
