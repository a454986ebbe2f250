"""One rule for what a test needs outside Python: skip locally, fail in CI (issue 14).

A program or service that is missing makes its tests skip, with the reason, on a developer's
machine, and fail under TOLLWAY_TEST_REQUIRE_SERVICES=1, which .ci/run sets after installing
everything they need; so a green CI run has really run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import require_tool

REPO = Path(__file__).parents[1]
NEED_PROGRAMS = [
    "tests/deploy/test_systemd.py::test_systemd_analyze_verify_accepts_the_unit",
    "tests/proofs/test_redis_outage.py::test_redis_outage_fails_open_and_recovers",
]


def test_a_missing_tool_skips_locally_and_names_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install nginx-light"):
        require_tool("tollway-no-such-nginx", package="nginx-light")


def test_a_missing_tool_fails_where_services_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match=r"tollway-no-such-tool is not installed"):
        require_tool("tollway-no-such-tool")


def test_a_tool_is_found_at_its_path_or_on_the_path(tmp_path: Path) -> None:
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\n")
    assert require_tool("sh", path=str(program)) == str(program)
    assert require_tool("sh", path=str(tmp_path / "absent")).endswith("/sh")


def run_without_programs(require: bool) -> subprocess.CompletedProcess[str]:
    """Run tests that need systemd-analyze and redis-server with neither on the PATH."""
    env = {k: v for k, v in os.environ.items() if k != "TOLLWAY_TEST_REQUIRE_SERVICES"}
    env["PATH"] = str(Path(sys.executable).parent)
    if require:
        env["TOLLWAY_TEST_REQUIRE_SERVICES"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *NEED_PROGRAMS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_systemd_and_redis_tests_skip_locally_but_fail_in_ci_without_their_programs() -> None:
    local = run_without_programs(require=False)
    assert local.returncode == 0, local.stdout
    assert "2 skipped" in local.stdout
    assert "systemd-analyze is not installed (apt-get install systemd)" in local.stdout
    ci = run_without_programs(require=True)
    assert ci.returncode == 1, ci.stdout
    assert "1 failed, 1 error" in ci.stdout  # the redis test fails in its fixture
    assert "redis-server is not installed" in ci.stdout


def test_ci_installs_every_program_a_test_requires() -> None:
    calls = re.compile(r'require_tool\(\s*"([^"]+)"(?:,\s*package="([^"]+)")?')
    required = {
        found.groups()
        for path in (REPO / "tests").rglob("*.py")
        if path.name != Path(__file__).name
        for found in calls.finditer(path.read_text())
    }
    assert ("systemd-analyze", "systemd") in required
    ci_run = (REPO / ".ci" / "run").read_text()
    for program, package in required:
        line = rf"^need {re.escape(program)} {re.escape(package or program)}\b"
        assert re.search(line, ci_run, re.M), f".ci/run does not install {program}"
