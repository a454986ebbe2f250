"""The coverage gate of scripts/test: configured in pyproject.toml, stated in the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).parents[2]


def coverage_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["coverage"]


def test_branch_coverage_of_tollway_is_measured_with_a_floor() -> None:
    config = coverage_config()
    assert config["run"]["branch"] is True
    assert config["run"]["source"] == ["tollway"]
    assert config["report"]["fail_under"] >= 80


def test_the_whole_suite_runs_under_the_gate_and_ci_runs_it() -> None:
    script = (REPO / "scripts" / "test").read_text()
    assert ".venv/bin/coverage run -m pytest" in script
    assert ".venv/bin/coverage report" in script
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == "scripts/test"  # the README's test command, with no arguments
    assert not any("pytest" in line for line in ci_lines if not line.startswith("#"))


def test_readme_states_the_figure_and_the_floor() -> None:
    readme = (REPO / "README.md").read_text()
    found = re.search(
        r"branch coverage of `src/tollway` is ([\d.]+)\s?% .*?floor of ([\d.]+)\s?%", readme, re.S
    )
    assert found is not None, "README does not state the coverage figure and floor"
    figure, floor = float(found.group(1)), float(found.group(2))
    assert floor == coverage_config()["report"]["fail_under"]
    assert figure >= floor
