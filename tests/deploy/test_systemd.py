"""The systemd unit: ``systemd-analyze verify`` and its hardening options."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import require_tool
from tests.servers import VENV_BIN

from .helpers import DEPLOY

UNIT = DEPLOY / "systemd" / "tollway.service"
INSTALL_BIN = "/opt/tollway/.venv/bin"


def unit_options(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd keys may repeat, so every value is kept)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze verify on ``text``, with ExecStart pointing at this checkout's venv
    (verify checks that the binaries exist)."""
    analyze = require_tool("systemd-analyze", package="systemd")
    unit = tmp_path / "tollway.service"
    unit.write_text(text.replace(INSTALL_BIN, str(VENV_BIN)))
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text())
    # verify exits 0 even for unknown keys or bad values; it only warns, so demand silence.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    result = verify(tmp_path, UNIT.read_text().replace("ProtectSystem=", "ProtectSystems="))
    assert "ProtectSystems" in result.stderr


def test_unit_runs_unprivileged_and_hardened() -> None:
    service = unit_options(UNIT.read_text())["Service"]
    assert service["DynamicUser"] == ["yes"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["ProtectHome"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["StateDirectory"] == ["tollway"]
    assert service["WorkingDirectory"] == ["/var/lib/tollway"]


def test_unit_gives_room_for_many_connections() -> None:
    # systemd's default of 1,024 open files let 1,100 slow connections lock every client out.
    service = unit_options(UNIT.read_text())["Service"]
    assert int(service["LimitNOFILE"][0]) >= 65536


def test_unit_migrates_then_serves_and_stops_gracefully() -> None:
    options = unit_options(UNIT.read_text())
    service = options["Service"]
    assert service["ExecStartPre"] == [f"{INSTALL_BIN}/tollway migrate"]
    assert service["ExecStart"] == [f"{INSTALL_BIN}/tollway serve --workers ${{TOLLWAY_WORKERS}}"]
    environment = " ".join(service["Environment"])
    assert "TOLLWAY_WORKERS=" in environment
    assert "TOLLWAY_HOST=127.0.0.1" in environment, "behind nginx, listen on loopback only"
    assert "TOLLWAY_TRUSTED_PROXIES=127.0.0.1" in environment
    assert service["KillSignal"] == ["SIGTERM"]
    # systemd must wait longer than Tollway's own 30 s graceful shutdown.
    assert int(service["TimeoutStopSec"][0]) > 30
    assert options["Install"]["WantedBy"] == ["multi-user.target"]
