"""Container health check: exit 0 when this container's gateway answers ``/-/health``.

Plain standard library, because the slim base image has no curl. Used by the Dockerfile's
HEALTHCHECK and by compose.yaml.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("TOLLWAY_PORT", "8000")
    url = f"http://127.0.0.1:{port}/-/health"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (fixed http URL)
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
