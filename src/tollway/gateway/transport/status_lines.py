"""HTTP/1.1 status lines for the responses the transport writes itself.

Tollway's own table rather than uvicorn's ``STATUS_LINE``, which is not uvicorn's public API
(issue 10, item 7): one less name that a uvicorn release could take away.
"""

from __future__ import annotations

import http


def status_line(status: int) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (an empty reason for a code without a name)."""
    try:
        reason = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


STATUS_LINE: dict[int, bytes] = {status: status_line(status) for status in range(100, 600)}
