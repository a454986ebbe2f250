"""The real ``tollway`` command in separate processes, as a user runs it."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tollway.db.session import make_engine, session_factory, transaction
from tollway.services import users

from .conftest import require_tool
from .servers import free_port, run_cli, tollway_env, tollway_process, tollway_serve

KEY = re.compile(r"tw_[0-9A-Za-z]{46}")

CONFIG = """
backends:
  names:
    app: tollway.samples.names:app
apis:
  names:
    path: /names
    backend: names
products:
  starter:
    apis: [names]
"""


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.stderr
    return lines[0]


def key_status(base: str, key: str) -> int:
    return httpx.get(f"{base}/names/generate_name", headers={"X-API-Key": key}).status_code


def wait_for_status(base: str, key: str, status: int, within: float = 2.0) -> float:
    """Seconds until ``key`` gets ``status``; fails if it takes longer than ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if key_status(base, key) == status:
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"key did not get {status} within {within}s (still {key_status(base, key)})")


@pytest.mark.slow
def test_apply_subscribe_serve_and_suspend_from_another_process(
    database_url: str, tmp_path: Path
) -> None:
    env = tollway_env(database_url)
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    applied = run_cli("apply", "-f", str(config), env=env)
    assert applied.returncode == 0, applied.stderr
    assert "+ create api names" in applied.stdout
    assert run_cli("apply", "-f", str(config), env=env).stdout.strip() == "no changes"
    assert run_cli("user", "create", "dev@example.com", env=env).returncode == 0
    created = run_cli(
        "subscription", "create", "--user", "dev@example.com", "--product", "starter", env=env
    )
    primary, secondary = KEY.findall(created.stdout)
    sub_id = re.search(r"subscription (\d+)", created.stdout).group(1)  # type: ignore[union-attr]

    with tollway_serve(env) as base:
        assert key_status(base, primary) == 200
        assert run_cli("subscription", "suspend", sub_id, env=env).returncode == 0
        wait_for_status(base, primary, 401)
        assert key_status(base, secondary) == 401
        assert run_cli("subscription", "activate", sub_id, env=env).returncode == 0
        wait_for_status(base, primary, 200)
        regenerated = run_cli("key", "regenerate", sub_id, env=env)
        (new_primary,) = KEY.findall(regenerated.stdout)
        wait_for_status(base, new_primary, 200)
        assert key_status(base, primary) == 401
        assert key_status(base, secondary) == 200


def test_export_applies_back_to_no_changes(sqlite_url: str, tmp_path: Path) -> None:
    env = tollway_env(sqlite_url)
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    assert run_cli("apply", "-f", str(config), env=env).returncode == 0
    exported = tmp_path / "exported.yaml"
    assert run_cli("export", "-o", str(exported), env=env).returncode == 0
    assert run_cli("apply", "-f", str(exported), env=env).stdout.strip() == "no changes"


def test_dry_run_changes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    env = tollway_env(sqlite_url)
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG)
    dry = run_cli("apply", "-f", str(config), "--dry-run", env=env)
    assert "+ create api names" in dry.stdout and "dry run" in dry.stdout
    assert "+ create api names" in run_cli("apply", "-f", str(config), env=env).stdout


def test_bad_config_names_the_place(sqlite_url: str, tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text(CONFIG.replace("backend: names", "backend: nmaes"))
    result = run_cli("apply", "-f", str(config), env=tollway_env(sqlite_url))
    assert result.returncode == 1
    assert "apis.names.backend: no backend named 'nmaes' (did you mean 'names'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_yaml_is_one_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    config = tmp_path / "tollway.yaml"
    config.write_text("apis: [unclosed\n")
    result = run_cli("apply", "-f", str(config), env=tollway_env(sqlite_url))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "line" in result.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = tollway_env(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing")
    line = one_line_error(run_cli("migrate", env=env))
    assert "cannot reach the database" in line


def test_unknown_product_is_one_line(sqlite_url: str) -> None:
    env = tollway_env(sqlite_url)
    run_cli("user", "create", "a@example.com", env=env)
    line = one_line_error(
        run_cli("subscription", "create", "--user", "a@example.com", "--product", "gold", env=env)
    )
    assert "no product named 'gold'" in line


def test_port_in_use_is_one_line(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(run_cli("serve", "--port", str(port), env=tollway_env(sqlite_url)))
    assert f"port {port}" in line and "in use" in line


def test_workers_without_shared_counters_are_refused(sqlite_url: str) -> None:
    result = run_cli("serve", "--workers", "2", "--port", "0", env=tollway_env(sqlite_url))
    line = one_line_error(result)
    assert "--workers 2 needs shared counters" in line and "TOLLWAY_REDIS_URL" in line


def test_help_everywhere() -> None:
    for args in (
        [],
        ["apply"],
        ["user", "create"],
        ["subscription", "suspend"],
        ["key", "regenerate"],
    ):
        result = run_cli(*args, "--help", env=tollway_env("sqlite://"))
        assert result.returncode == 0 and "Usage" in result.stdout


CURL_LINE = r'^\s*(curl -H "X-API-Key: tw_\w+" "\S+")\s*$'
DEMO_FILES = {"tollway-demo.db", "tollway-demo.secret", "recipes-demo.db"}
SQLITE_COMPANIONS = {"tollway-demo.db-wal", "tollway-demo.db-shm"}  # SQLite's WAL mode
README = Path(__file__).parents[1] / "README.md"


def run_as_printed(line: str) -> tuple[int, str]:
    """Run a printed ``curl`` line as a user pasting it would; its status and body."""
    args = shlex.split(line)
    assert args[0] == "curl", line
    quiet = ["--silent", "--show-error", "--write-out", "\n%{http_code}"]
    result = subprocess.run(
        [require_tool("curl"), *quiet, *args[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr  # e.g. "Failed to connect ... refused"
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


def printed_key(line: str) -> str:
    found = KEY.search(line)
    assert found is not None, line
    return found.group(0)


@pytest.mark.slow
def test_demo_curl_line_works_the_moment_it_is_printed(tmp_path: Path) -> None:
    env = tollway_env("sqlite://")
    with tollway_process("demo", env, cwd=tmp_path, wait=False) as first:
        line = first.read_until(CURL_LINE).group(1)
        status, body = run_as_printed(line)
        assert status == 200, body
        assert json.loads(body)["name"].casefold().startswith("n")
    assert line.endswith(f'"{first.base}/names/generate_name?starts_with=n"')
    first_key = printed_key(line)

    # the second run reuses the database and prints a new key that works; the old one does not
    with tollway_process("demo", env, cwd=tmp_path, wait=False) as second:
        line = second.read_until(CURL_LINE).group(1)
        assert run_as_printed(line)[0] == 200
        assert printed_key(line) != first_key
        assert run_as_printed(line.replace(printed_key(line), first_key))[0] == 401
    assert "the previous run's key stops working" in second.output


@pytest.mark.slow
def test_demo_writes_only_the_files_the_readme_names(tmp_path: Path) -> None:
    with tollway_process("demo", tollway_env("sqlite://"), cwd=tmp_path) as running:
        assert httpx.get(f"{running.base}/docs/recipes").status_code == 200
    written = {path.name for path in tmp_path.iterdir()}
    assert written == DEMO_FILES  # a clean stop closes the store: no -wal/-shm left behind
    readme = README.read_text()
    for name in DEMO_FILES | SQLITE_COMPANIONS:
        assert f"`{name}`" in readme, f"README does not name {name}"


def test_an_admin_gets_a_password_from_stdin_never_from_argv(sqlite_url: str) -> None:
    env = tollway_env(sqlite_url)
    assert run_cli("migrate", env=env).returncode == 0
    assert run_cli("user", "create", "boss@example.com", "--admin", env=env).returncode == 0
    weak = run_cli("user", "set-password", "boss@example.com", env=env, stdin="password\n")
    assert "password" in one_line_error(weak).lower()
    chosen = "Quiet-Harbour-71"
    done = run_cli("user", "set-password", "boss@example.com", env=env, stdin=chosen + "\n")
    assert done.returncode == 0 and done.stdout.strip() == "password set for boss@example.com"
    assert chosen not in done.stdout + done.stderr
    engine = make_engine(sqlite_url)
    try:
        with transaction(session_factory(engine)) as session:
            assert users.authenticate(session, "boss@example.com", chosen) is not None
            assert users.authenticate(session, "boss@example.com", "wrong-Harbour-71") is None
    finally:
        engine.dispose()
