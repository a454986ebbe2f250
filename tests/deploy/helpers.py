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

from tests.gateway.conftest import SECRET
from tests.servers import VENV_BIN
from tollway.config.apply import apply_config
from tollway.config.loader import load_config
from tollway.crypto import SecretBox
from tollway.db.migrate import upgrade
from tollway.db.session import make_engine, session_factory, transaction
from tollway.services import subscriptions, users

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


ECHO_CONFIG = """
backends:
  echo:
    url: {url}
apis:
  echo:
    path: /echo
    backend: echo
products:
  starter:
    apis: [echo]
"""


def prepare_store(database_url: str, echo_url: str, email: str = "dev@example.com") -> str:
    """Migrate, apply a one-API config in front of ``echo_url``, subscribe ``email``: the key."""
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        config = load_config(ECHO_CONFIG.format(url=echo_url), source="test", env={})
        apply_config(sessions, config, secret_box=SecretBox(SECRET))
        with transaction(sessions) as session:
            user = users.create_user(session, email)
            product = subscriptions.get_product(session, "starter")
            return subscriptions.create_subscription(session, user, product).primary
    finally:
        engine.dispose()
