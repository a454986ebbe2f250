"""docs/deploy.md stays in step with the files and commands the other deploy tests exercise."""

from __future__ import annotations

import re
import shlex

from .helpers import REPO
from .test_gunicorn import gunicorn_command

DOC = (REPO / "docs" / "deploy.md").read_text()


def test_every_file_the_guide_names_exists() -> None:
    named = set(re.findall(r"`((?:deploy|\.devcontainer|\.github)/[^`\s*]*)`", DOC))
    named |= {name for name in ("Dockerfile", ".dockerignore", "compose.yaml") if name in DOC}
    assert len(named) > 10
    missing = sorted(name for name in named if not (REPO / name).exists())
    assert missing == []


def test_gunicorn_recipe_is_the_tested_command() -> None:
    block = DOC.split("## gunicorn", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    line = next(part for part in block.replace("\\\n", " ").splitlines() if "gunicorn" in part)
    documented = shlex.split(line)
    tested = gunicorn_command(8000)
    # Same program, worker class, app and options; only the address and worker count differ.
    assert documented[:4] == tested[:4]
    options = {"--forwarded-allow-ips": "", "--graceful-timeout": "30"}
    for option, value in options.items():
        assert documented[documented.index(option) + 1] == value
        assert tested[tested.index(option) + 1] == value


def test_guide_says_what_is_not_exercised_here() -> None:
    assert "not exercised by the tests" in DOC
    assert "docker build" in DOC
