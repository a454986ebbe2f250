"""scripts/bootstrap as a newcomer meets it: says what it does on the first run, then nothing.

It runs on a copy of the script in a scratch project whose lock file pins nothing and whose
package is built by ``probe_backend.py`` (no download, a few seconds), not on this checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


def bootstrap(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(project / "scripts" / "bootstrap")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    shutil.copy(Path(__file__).parent / "probe_backend.py", tmp_path)
    (tmp_path / "requirements.lock").write_text("# nothing pinned\n")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "probe_backend"\nbackend-path = ["."]\n'
    )
    return tmp_path


@pytest.mark.slow
def test_first_run_says_what_it_installs_and_how_long_then_later_runs_are_silent(
    project: Path,
) -> None:
    first = bootstrap(project)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""  # scripts/demo's stdout stays the demo's own
    assert "first run: installing 0 pinned packages from requirements.lock" in first.stderr
    assert "about a minute" in first.stderr
    assert ".venv is ready" in first.stderr

    again = bootstrap(project)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.slow
def test_a_changed_lock_file_is_announced_and_installed(project: Path) -> None:
    assert bootstrap(project).returncode == 0
    with (project / "requirements.lock").open("a") as lock:
        lock.write("# changed\n")
    changed = bootstrap(project)
    assert changed.returncode == 0, changed.stderr
    assert "requirements.lock changed: updating .venv" in changed.stderr
    assert bootstrap(project).stderr == ""
