"""One access log, Tollway's, on every path; never a query string or a secret (issue 9, item 6).

Subscription keys travel in ``?subscription-key=`` and portal tokens in ``/portal/reset?token=``;
uvicorn's own access log wrote both to disk on the ASGI path.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy.helpers import prepare_store
from tests.servers import serve_gateway, tollway_env, tollway_process
from tollway.settings import Settings
from tollway.site.compose import create_gateway

from ..gateway.conftest import SECRET

SECRETS = ("reset-token-0123456789", "docs-secret-42", "health-secret-42", "nowhere-secret-42")


def requests_with_secrets(base: str, key: str) -> list[httpx.Response]:
    """An API call with the key in the query, a wrong key, and Tollway's own pages."""
    with httpx.Client(base_url=base) as client:
        return [
            client.get(f"/echo/x?subscription-key={key}"),
            client.get("/echo/x?subscription-key=tw_guessed-key-0123"),
            client.get(f"/portal/reset?token={SECRETS[0]}"),
            client.get(f"/docs?probe={SECRETS[1]}"),
            client.get(f"/-/health?probe={SECRETS[2]}"),
            client.get(f"/nowhere?probe={SECRETS[3]}"),
        ]


def access_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name == "tollway.access"]


def wait_for_lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The access lines once ``count`` are there (a line follows its response)."""
    deadline = time.monotonic() + 10
    while len(lines := access_lines(caplog.records)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return lines


@pytest.fixture
def echo_store(tmp_path: Path, echo_url: str) -> tuple[str, str]:
    """(database URL, key) of a store with a keyed API /echo in front of the echo sample."""
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    return database_url, prepare_store(database_url, echo_url)


def test_every_path_gets_one_line_without_query_or_secret(
    echo_store: tuple[str, str], transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    database_url, key = echo_store
    settings = Settings(database_url=database_url, secret_key=SECRET, access_log=True)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="tollway.access")
    with serve_gateway(create_gateway(settings), transport) as base:
        caplog.clear()
        statuses = [r.status_code for r in requests_with_secrets(base, key)]
        lines = wait_for_lines(caplog, len(statuses))
    assert statuses[:2] == [200, 401] and statuses[4:] == [200, 404]
    assert len(lines) == len(statuses), lines
    for line in lines:
        assert "?" not in line and key not in line and "tw_guessed" not in line, line
        assert not any(secret in line for secret in SECRETS), line
    shown = [line.split('"')[1] for line in lines]
    assert shown == [
        "GET /echo",
        "GET /echo",
        "GET /portal/reset",
        "GET /docs",
        "GET /-/health",
        "GET /nowhere",
    ]
    assert lines[0].startswith('127.0.0.1 "GET /echo" 200 ') and " sub=" in lines[0]


def test_served_process_writes_only_tollways_access_log(
    echo_store: tuple[str, str], transport: str
) -> None:
    database_url, key = echo_store
    fast = "true" if transport == "fast" else "false"
    env = tollway_env(database_url, TOLLWAY_ACCESS_LOG="true", TOLLWAY_FAST_PATH=fast)
    with tollway_process("serve", env) as served:
        statuses = [r.status_code for r in requests_with_secrets(served.base, key)]
    output = served.output
    assert statuses[:2] == [200, 401], output
    assert key not in output and "tw_guessed" not in output
    assert not any(secret in output for secret in SECRETS), output
    assert "uvicorn.access" not in output and "HTTP/1.1" not in output, output
    assert output.count('"GET /echo"') == 2 and '"GET /portal/reset"' in output, output
