"""Shared helpers for the deployment tests: repo paths, real processes, YAML files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import VENV_BIN

REPO = Path(__file__).resolve().parents[2]
# uvicorn re-raises the SIGTERM it handled once its graceful shutdown is complete, so the exit
# status is "killed by SIGTERM" (or 0); systemd, Docker and Kubernetes all treat that as a
# clean stop of a process they sent SIGTERM to.
CLEAN_EXIT = (0, -signal.SIGTERM)
DEPLOY = REPO / "deploy"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the project's virtualenv first on PATH (as in the image: /opt/venv/bin)."""
    out = dict(env)
    out["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return out


def wait_http(url: str, process: subprocess.Popen[str], timeout: float = 30) -> httpx.Response:
    """Poll ``url`` until it answers 200; fail with the process output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process exited early ({process.returncode}):\n{output}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


def stop(process: subprocess.Popen[str], timeout: float = 15) -> tuple[int, str]:
    """SIGTERM ``process`` (what docker stop / systemd / kubelet send); return (code, output)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"did not stop within {timeout}s of SIGTERM:\n{output}") from None
    return process.returncode, output or ""


@contextmanager
def running(
    args: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Start a real process (stdout+stderr captured); make sure it is gone afterwards."""
    process = subprocess.Popen(
        args,
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
