"""The documented ``uvicorn --factory`` command cannot be talked into believing a forged client.

uvicorn's ``--proxy-headers`` is on by default and trusts 127.0.0.1: it rewrites the client
address and scheme from ``X-Forwarded-For``/``-Proto`` before Tollway sees the request, so any
caller reaching the port through a local hop (a TCP forwarder, a tunnel, a sidecar) could choose
the address ip-filters and per-address limits see. Only ``TOLLWAY_TRUSTED_PROXIES`` may decide;
these run the command as documented *without* ``--no-proxy-headers`` and ``--no-access-log``.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.deploy.helpers import CLEAN_EXIT, prepare_store, process_env, running, stop, wait_http
from tests.servers import VENV_BIN, free_port, tollway_env

FORGED = {"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"}


def uvicorn_factory(port: int, transport: str) -> list[str]:
    """The command of docs/deploy.md, minus the flags someone might forget."""
    command = [str(VENV_BIN / "uvicorn"), "--factory", "tollway.asgi:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if transport == "fast":
        command += ["--http", "tollway.gateway.transport.fastpath:GatewayProtocol"]
    return command


def gunicorn_without_forwarded_allow_ips(port: int) -> list[str]:
    """docs/deploy.md's gunicorn command without ``--forwarded-allow-ips ''``."""
    return [
        str(VENV_BIN / "gunicorn"),
        "-k",
        "uvicorn.workers.UvicornWorker",
        "tollway.asgi:create_app()",
        "--bind",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
    ]


def test_gunicorn_without_forwarded_allow_ips_believes_no_forged_address(
    tmp_path: Path, echo_url: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    key = prepare_store(database_url, echo_url)
    env = process_env(tollway_env(database_url))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(gunicorn_without_forwarded_allow_ips(port), env, cwd=tmp_path) as process:
        wait_http(f"{base}/-/ready", process, timeout=60)
        forwarded = httpx.get(f"{base}/echo/x?subscription-key={key}", headers=FORGED)
        _, output = stop(process)
    assert forwarded.status_code == 200, output
    assert dict(forwarded.json()["headers"])["x-forwarded-for"] == "127.0.0.1"
    assert key not in output, output  # gunicorn's --access-logfile gets no uvicorn lines


def test_forgotten_no_proxy_headers_does_not_let_a_local_caller_forge_its_address(
    tmp_path: Path, echo_url: str, transport: str
) -> None:
    database_url = f"sqlite:///{tmp_path / 'tollway.db'}"
    key = prepare_store(database_url, echo_url)
    env = process_env(tollway_env(database_url, TOLLWAY_ACCESS_LOG="true"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(uvicorn_factory(port, transport), env, cwd=tmp_path) as process:
        wait_http(f"{base}/-/ready", process)
        forwarded = httpx.get(f"{base}/echo/x?subscription-key={key}", headers=FORGED)
        page = httpx.get(f"{base}/portal/reset?token=reset-token-0123456789", headers=FORGED)
        code, output = stop(process)
    assert forwarded.status_code == 200 and code in CLEAN_EXIT, output
    seen = dict(forwarded.json()["headers"])
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the real peer, not the forged address
    assert seen["x-forwarded-proto"] == "http"
    assert page.status_code < 500
    lines = [line for line in output.splitlines() if "tollway.access" in line]
    assert len(lines) >= 3, output  # /-/ready, the API call, the portal page
    assert all("198.51.100.9" not in line for line in lines), output
    assert key not in output and "reset-token" not in output, output
