"""The client-side HTTP limits of one gateway process, read once from its settings.

Request-head sizes (nginx's ``large_client_header_buffers`` and Apache's ``LimitRequest*``),
client timeouts (nginx's ``client_header_timeout``/``client_body_timeout``/``keepalive_timeout``)
and the per-process connection cap. The cap is derived from the open-file limit by default:
a proxied call holds two descriptors (the client's and the backend's), and the store, Redis,
listening sockets and backend pools need some more (docs/security.md has the sizing).
"""

from __future__ import annotations

import functools
import logging
import resource
from dataclasses import dataclass

from tollway.settings import Settings

logger = logging.getLogger("tollway")

FALLBACK_OPEN_FILES = 65536  # when the hard limit is "unlimited" (macOS): a sane target
MIN_CONNECTIONS = 16


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What a client connection may cost this process, and for how long."""

    max_request_line: int
    max_header_line: int
    max_head: int
    max_headers: int
    head_timeout: float
    body_timeout: float
    keep_alive_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        open_files = open_file_limit()
        return cls(
            max_request_line=settings.max_request_line_bytes,
            max_header_line=settings.max_header_line_bytes,
            max_head=settings.max_request_head_bytes,
            max_headers=settings.max_header_count,
            head_timeout=settings.request_head_timeout,
            body_timeout=settings.request_body_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
            max_connections=settings.max_connections or derived_connection_cap(open_files),
        )

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, at most 1 s."""
        return max(0.05, min(1.0, self.head_timeout / 4, self.body_timeout / 4))


def derived_connection_cap(open_files: int) -> int:
    """Client connections that fit in ``open_files`` descriptors: two per proxied call, after
    keeping an eighth (at least 64) for listening sockets, store, Redis, logs and pools."""
    reserve = max(64, open_files // 8)
    return max(MIN_CONNECTIONS, (open_files - reserve) // 2)


@functools.cache
def open_file_limit() -> int:
    """The soft open-file limit, first raised to the hard limit (as nginx's
    ``worker_rlimit_nofile`` or most servers do): once per process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FALLBACK_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the open-file limit from %d: %s", soft, exc)
            return soft
        logger.info("open-file limit raised from %d to %d", soft, target)
        return target
    return FALLBACK_OPEN_FILES if soft == resource.RLIM_INFINITY else soft
