"""The container image's contract, tested without Docker (the engine cannot run here).

The image runs ``deploy/entrypoint.sh serve`` and checks health with ``deploy/healthcheck.py``;
these tests run those same files, with the same arguments, as real processes. The
Dockerfile itself is parsed to make sure it really uses them (the build is not exercised here).
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, tollway_env

from .helpers import CLEAN_EXIT, DEPLOY, REPO, process_env, running, stop, wait_http

ENTRYPOINT = DEPLOY / "entrypoint.sh"
HEALTHCHECK = DEPLOY / "healthcheck.py"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"expected exec form (JSON array), got {arguments!r}"
    return [str(item) for item in value]


def image_command() -> list[str]:
    """What the container runs: ENTRYPOINT + CMD of the final stage, in exec form."""
    final = dict(dockerfile_instructions(REPO / "Dockerfile"))
    return exec_form(final["ENTRYPOINT"]) + exec_form(final["CMD"])


def copies() -> dict[str, str]:
    """Destination -> source for the runtime stage's COPY lines (single-file copies)."""
    mapping: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions(REPO / "Dockerfile"):
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, destination = shlex.split(arguments)
        for source in sources:
            target = destination + Path(source).name if destination.endswith("/") else destination
            mapping[target] = source
    return mapping


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    instructions = dockerfile_instructions(REPO / "Dockerfile")
    bases = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(bases) >= 2
    assert all(base.startswith("python:3.11-slim") for base in bases)
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "the image must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    health = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    assert len(health) == 1
    command = exec_form(health[0].split(" CMD ", 1)[1])
    assert command[0] == "python" and command[1] in copies()
    assert copies()[command[1]] == "deploy/healthcheck.py"


def test_dockerfile_installs_the_lock_file_before_the_code() -> None:
    runs = [args for keyword, args in dockerfile_instructions(REPO / "Dockerfile")]
    lock = runs.index("pip install -r requirements.lock")
    project = runs.index("pip install --no-deps .")
    assert lock < runs.index("src ./src") < project


def test_dockerfile_runs_the_entrypoint_script_tested_below() -> None:
    command = image_command()
    assert command == ["/app/entrypoint.sh", "serve"]
    assert copies()[command[0]] == "deploy/entrypoint.sh"
    assert ENTRYPOINT.stat().st_mode & 0o111, "entrypoint.sh must be executable"
    env = dict(dockerfile_instructions(REPO / "Dockerfile"))["ENV"]
    assert 'TOLLWAY_TRUSTED_PROXIES=""' in env, "trust no proxy unless configured"


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "*.db", ".env", "tests"} <= ignored
    assert not ignored & {"src", "deploy", "requirements.lock", "pyproject.toml", "README.md"}


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={"TOLLWAY_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.slow
def test_entrypoint_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "tollway.db"
    port = free_port()
    env = process_env(
        tollway_env(
            f"sqlite:///{database}",
            TOLLWAY_HOST="127.0.0.1",
            TOLLWAY_PORT=str(port),
            TOLLWAY_WORKERS="1",
        )
    )
    # Same script, same argument as the image's ENTRYPOINT + CMD.
    with running([str(ENTRYPOINT), "serve"], env, cwd=tmp_path) as process:
        health = wait_http(f"http://127.0.0.1:{port}/-/health", process)
        assert health.json()["status"] == "ok"
        ready = httpx.get(f"http://127.0.0.1:{port}/-/ready")
        assert ready.status_code == 200, ready.text
        with sqlite3.connect(database) as db:
            version = db.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(version) == 1
        assert healthcheck(port).returncode == 0
        code, output = stop(process)
    assert code in CLEAN_EXIT, output
    assert "database is up to date" in output
    assert "Traceback" not in output
    failed = healthcheck(port)
    assert failed.returncode == 1
    assert "unhealthy" in failed.stderr


def test_entrypoint_passes_other_commands_through(tmp_path: Path) -> None:
    env = process_env(tollway_env(f"sqlite:///{tmp_path / 'x.db'}"))
    result = subprocess.run(
        [str(ENTRYPOINT), "tollway", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "database is up to date"


def test_entrypoint_hands_tollway_workers_to_tollway_serve(tmp_path: Path) -> None:
    # (Serving with several workers is exercised by test_graceful_shutdown.py; here an
    # invalid count shows the variable really reaches `tollway serve --workers`.)
    env = process_env(
        tollway_env(f"sqlite:///{tmp_path / 'x.db'}", TOLLWAY_WORKERS="0", TOLLWAY_PORT="1")
    )
    result = subprocess.run(
        [str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--workers" in result.stderr, result.stderr  # the usage error names the option
    assert "database is up to date" in result.stdout


def test_entrypoint_stops_with_one_clear_line_when_the_store_is_unreachable(
    tmp_path: Path,
) -> None:
    env = process_env(
        tollway_env(
            f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
            TOLLWAY_PORT=str(free_port()),
        )
    )
    result = subprocess.run(
        [str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the database")
