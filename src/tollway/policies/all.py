"""Import every built-in policy so each registers itself."""

from __future__ import annotations

from tollway.policies import (  # noqa: F401
    cache,
    cors,
    ipfilter,
    jwt,
    quota,
    ratelimit,
    setheader,
    sizelimit,
    timeout,
)
