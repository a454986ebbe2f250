"""The admin API of a running ``tollway serve`` (a separate process): what it creates works in the
gateway within 2 s, what it suspends stops within 2 s; and the CLI's own changes (tokens,
``apply``, users) each leave one audit row naming ``cli``, printed by ``tollway audit``."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from tests.gateway.conftest import apply
from tests.servers import run_cli, tollway_env, tollway_serve
from tests.test_cli import CONFIG
from tollway.db.session import session_factory, transaction
from tollway.services import admin_tokens

from .conftest import API

TOKEN = re.compile(r"twa_[0-9A-Za-z]{46}")

pytestmark = pytest.mark.slow


def wait_for_status_at(base: str, path: str, key: str, status: int, within: float = 2.0) -> None:
    """Poll ``path`` with ``key`` until it answers ``status``; fail after ``within`` seconds
    (the 2 s a change may take to reach running gateways, as in the CLI's test)."""
    start = time.monotonic()
    last = 0
    while time.monotonic() - start < within:
        last = httpx.get(f"{base}{path}", headers={"X-API-Key": key}).status_code
        if last == status:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} did not answer {status} within {within}s (still {last})")


def test_api_changes_reach_a_running_gateway(engine: Engine, database_url: str) -> None:
    apply(engine, yaml.safe_load(CONFIG))
    with transaction(session_factory(engine)) as session:
        token = admin_tokens.create_token(session, "ci").token
    auth = {"Authorization": f"Bearer {token}"}
    env = tollway_env(database_url)
    with tollway_serve(env) as base, httpx.Client(base_url=base + API, headers=auth) as client:
        created = [
            client.post("/apis", json={"name": "fresh", "path": "/fresh", "backend": "names"}),
            client.post("/products", json={"name": "partner", "apis": ["fresh"]}),
            client.post("/users", json={"email": "partner@example.com"}),
        ]
        assert [r.status_code for r in created] == [201, 201, 201], [r.text for r in created]
        subscribed = client.post(
            "/subscriptions", json={"user": "partner@example.com", "product": "partner"}
        )
        assert subscribed.status_code == 201, subscribed.text
        key, sub_id = subscribed.json()["primary_key"], subscribed.json()["id"]

        wait_for_status_at(base, "/fresh/generate_name", key, 200)
        assert httpx.get(f"{base}/names/generate_name", headers={"X-API-Key": key}).is_error
        suspended = client.post(f"/subscriptions/{sub_id}/suspend")
        assert suspended.status_code == 200 and suspended.json()["state"] == "suspended"
        wait_for_status_at(base, "/fresh/generate_name", key, 401)
        audit = client.get("/audit", params={"actor": "token:ci"}).json()["items"]
    assert [(row["entity"], row["action"]) for row in reversed(audit)] == [
        ("api", "create"),
        ("product", "create"),
        ("user", "create"),
        ("subscription", "create"),
        ("subscription", "suspend"),
    ]
    assert {row["address"] for row in audit} == {"127.0.0.1"}
    assert key not in json.dumps(audit)


def test_cli_tokens_and_changes_are_audited_as_cli(sqlite_url: str, tmp_path: Path) -> None:
    env = tollway_env(sqlite_url)
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    assert run_cli("apply", "-f", str(config), env=env).returncode == 0
    made = run_cli("token", "create", "ci", "--read-only", "--expires", "30", env=env)
    assert made.returncode == 0, made.stderr
    (token,) = TOKEN.findall(made.stdout)
    assert run_cli("token", "revoke", "ci", env=env).returncode == 0
    listed = run_cli("token", "list", env=env).stdout
    assert "\tread-only\trevoked\texpires " in listed and token not in listed

    printed = run_cli("audit", "--since", "1h", env=env)
    assert printed.returncode == 0, printed.stderr
    rows = [line.split("\t") for line in printed.stdout.splitlines()]
    assert [
        (actor, address, entity, action) for _, actor, address, entity, _, action, _ in rows
    ] == [
        ("cli", "local", "admin-token", "revoke"),
        ("cli", "local", "admin-token", "create"),
        ("cli", "local", "config", "apply"),
    ]
    assert json.loads(rows[2][6])["plan"][0] == "+ create backend names"
    assert token not in printed.stdout
    bad = run_cli("audit", "--since", "yesterday", env=env)
    assert bad.returncode == 1 and "30m, 12h or 7d" in bad.stderr
