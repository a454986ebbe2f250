"""Start the npm package ``oidc-provider`` (a certified OpenID Connect provider) on loopback.

``npm ci`` runs once into a cache directory keyed by the lock file, so the repository holds
only ``oidc/package.json`` and ``oidc/package-lock.json``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES
from tests.servers import free_port

SOURCE = Path(__file__).parent / "oidc"
CLIENT_ID = "tollway-portal"
CLIENT_SECRET = "test-client-secret"


def provider_dir() -> Path:
    """A directory with the provider script and its installed node_modules."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        if REQUIRE_SERVICES:
            pytest.fail("node and npm are needed for the OpenID Connect tests")
        pytest.skip("node and npm are needed for the OpenID Connect tests")
    lock = (SOURCE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = cache / "tollway-tests" / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (target / "node_modules" / "oidc-provider").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, target / name)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            check=True,
            capture_output=True,
            timeout=300,
        )
    shutil.copy(SOURCE / "provider.mjs", target / "provider.mjs")
    return target


@contextmanager
def oidc_provider(redirect_uri: str) -> Iterator[str]:
    """Run the provider; yield its issuer URL; stop it after."""
    directory = provider_dir()
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": redirect_uri,
    }
    process = subprocess.Popen(
        ["node", "provider.mjs"],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the provider listens (or exits)
        if not line.startswith("READY "):
            raise RuntimeError(f"oidc-provider did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the stdout pipe
