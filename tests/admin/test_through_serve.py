"""The admin API of a running ``tollway serve`` (a separate process), with tokens made by the
CLI: what it creates works in the gateway within 2 s, what it suspends stops within 2 s, and
every change, from the API or the CLI, leaves exactly one audit row naming its author."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import run_cli, tollway_env, tollway_serve
from tests.test_cli import CONFIG

from .conftest import API

TOKEN = re.compile(r"twa_[0-9A-Za-z]{46}")

pytestmark = pytest.mark.slow


def audit_lines(env: dict[str, str]) -> list[dict[str, object]]:
    printed = run_cli("audit", "--since", "1h", env=env)
    assert printed.returncode == 0, printed.stderr
    rows = []
    for line in printed.stdout.splitlines():
        _at, actor, address, entity, entity_id, action, changes = line.split("\t")
        rows.append(
            {
                "actor": actor,
                "address": address,
                "entity": entity,
                "id": entity_id,
                "action": action,
                "changes": json.loads(changes),
            }
        )
    return rows


def test_tokens_and_changes_through_a_running_gateway(database_url: str, tmp_path: Path) -> None:
    env = tollway_env(database_url)
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    assert run_cli("apply", "-f", str(config), env=env).returncode == 0
    made = run_cli("token", "create", "ci", env=env)
    assert made.returncode == 0, made.stderr
    (token,) = TOKEN.findall(made.stdout)
    listed = run_cli("token", "list", env=env).stdout
    assert "ci\ttwa_" in listed and "read-write\tactive" in listed
    assert token not in listed  # shown once, when made

    auth = {"Authorization": f"Bearer {token}"}
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

        def status(path: str) -> int:
            return httpx.get(f"{base}{path}", headers={"X-API-Key": key}).status_code

        wait_for_status_at(base, "/fresh/generate_name", key, 200)
        assert status("/names/generate_name") == 403  # not in the partner product
        suspended = client.post(f"/subscriptions/{sub_id}/suspend")
        assert suspended.status_code == 200 and suspended.json()["state"] == "suspended"
        wait_for_status_at(base, "/fresh/generate_name", key, 401)

        assert run_cli("token", "revoke", "ci", env=env).returncode == 0
        assert client.get("/apis").status_code == 401  # at once: checked on every request

    rows = audit_lines(env)
    by_token = [r for r in rows if r["actor"] == "token:ci"]
    assert [(r["entity"], r["action"]) for r in reversed(by_token)] == [
        ("api", "create"),
        ("product", "create"),
        ("user", "create"),
        ("subscription", "create"),
        ("subscription", "suspend"),
    ]
    assert {r["address"] for r in by_token} == {"127.0.0.1"}
    by_cli = [(r["entity"], r["action"]) for r in reversed(rows) if r["actor"] == "cli"]
    assert by_cli == [
        ("config", "apply"),
        ("admin-token", "create"),
        ("admin-token", "revoke"),
    ]
    text = json.dumps(rows)
    assert key not in text and token not in text


def wait_for_status_at(base: str, path: str, key: str, status: int, within: float = 2.0) -> None:
    """Poll ``path`` with ``key`` until it answers ``status``; fail after ``within`` seconds
    (the 2 s a change takes to reach running gateways, as in the CLI's test)."""
    start = time.monotonic()
    last = 0
    while time.monotonic() - start < within:
        last = httpx.get(f"{base}{path}", headers={"X-API-Key": key}).status_code
        if last == status:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} did not answer {status} within {within}s (still {last})")
