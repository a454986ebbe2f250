"""Requests refused before they reach the gateway: oversized, ambiguous or malformed heads.

An intermediary that guesses how a request is framed is how request smuggling starts, so
anything ambiguous is refused and the connection closed (RFC 9112 §6.1, §6.3; nginx refuses the
same). Statuses: 400 (malformed, no or two ``Host``, ambiguous framing), 405 (``TRACE``,
``CONNECT``), 408 (head or body too slow), 414 (request line), 431 (header line, head, count),
501 (a transfer coding other than ``chunked``), 503 (connection cap), 505 (not HTTP/1.x).
"""

from __future__ import annotations

import logging

import httptools

from tollway import problems
from tollway.gateway.calltrace import CallTrace
from tollway.gateway.transport.http_limits import HttpLimits
from tollway.gateway.transport.status_lines import STATUS_LINE
from tollway.types import Headers

logger = logging.getLogger("tollway.gateway")

MALFORMED = problems.register_problem(
    problems.ProblemType(
        "malformed-request",
        "Malformed request",
        400,
        "The request is not well-formed HTTP/1.1, or its framing is ambiguous (two Host or "
        "Content-Length headers, Content-Length with Transfer-Encoding...). Send one "
        "well-formed request; the connection is closed.",
    )
)
METHOD_REFUSED = problems.register_problem(
    problems.ProblemType(
        "method-refused",
        "Method refused by the gateway",
        405,
        "TRACE (it echoes credentials back to scripts) and CONNECT (the gateway is not a "
        "forward proxy) are refused for every path.",
    )
)
REQUEST_TIMEOUT = problems.register_problem(
    problems.ProblemType(
        "request-timeout",
        "Request timeout",
        408,
        "The request head or body did not arrive in time. Send the whole request without "
        "pausing; the connection is closed.",
    )
)
REQUEST_LINE_TOO_LONG = problems.register_problem(
    problems.ProblemType(
        "request-line-too-long",
        "Request line too long",
        414,
        "The request line (method, path with query, version) is longer than the gateway "
        "accepts. Shorten the path or query string, or move data into the body.",
    )
)
HEAD_TOO_LARGE = problems.register_problem(
    problems.ProblemType(
        "request-head-too-large",
        "Request header fields too large",
        431,
        "A header line, the whole request head, or the number of header lines is over the "
        "gateway's limit. Send fewer or shorter headers (large cookies are a usual cause).",
    )
)
CODING_NOT_IMPLEMENTED = problems.register_problem(
    problems.ProblemType(
        "transfer-coding-not-implemented",
        "Transfer coding not implemented",
        501,
        "The gateway only understands 'Transfer-Encoding: chunked'. Send the body with that "
        "alone, or with Content-Length.",
    )
)
TOO_MANY_CONNECTIONS = problems.register_problem(
    problems.ProblemType(
        "too-many-connections",
        "Too many connections",
        503,
        "The gateway process is at its connection limit and every connection is busy. Retry "
        "shortly.",
    )
)
VERSION_NOT_SUPPORTED = problems.register_problem(
    problems.ProblemType(
        "http-version-not-supported",
        "HTTP version not supported",
        505,
        "This port speaks HTTP/1.1 and HTTP/1.0 only. Send an HTTP/1.1 request.",
    )
)
INTERNAL_ERROR = problems.register_problem(
    problems.ProblemType(
        "internal-error",
        "Internal gateway error",
        500,
        "The gateway failed while reading this request; the failure is logged. Retry.",
    )
)

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
REFUSED_METHODS = frozenset({b"TRACE", b"CONNECT"})
HTTP_VERSIONS = frozenset({"1.0", "1.1"})


class Refusal(Exception):
    """A request the gateway answers itself with a problem, then closes the connection."""

    def __init__(
        self, problem: problems.ProblemType, detail: str, headers: Headers | None = None
    ) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail
        self.headers = headers or []

    def response(self, default_headers: Headers) -> bytes:
        """The complete response: status line, headers (``Connection: close``) and body."""
        body = problems.problem_body(self.problem, self.detail)
        lines = [
            STATUS_LINE[self.problem.status],
            b"content-type: " + problems.PROBLEM_CONTENT_TYPE + b"\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"x-request-id: " + CallTrace().ensure([]) + b"\r\n",  # (a new one: the head is bad)
        ]
        lines += [name + b": " + value + b"\r\n" for name, value in default_headers]
        lines += [name + b": " + value + b"\r\n" for name, value in self.headers]
        return b"".join([*lines, b"\r\n", body])


def check_head(
    method: bytes, version: str, headers: Headers, url_length: int, limits: HttpLimits
) -> Refusal | None:
    """Why a complete request head is refused, or None: its size (431), version (505), method
    (405), ``Host`` and framing (400/501). ``headers`` have lower-case names. One pass over the
    headers, as this runs for every request. (A head cannot grow past ``max_head`` unseen before
    it is complete: ``GuardedProtocol.data_received`` counts the bytes of an incomplete head.)"""
    if len(headers) > limits.max_headers:
        detail = f"The request has more than {limits.max_headers} header lines."
        return Refusal(HEAD_TOO_LARGE, detail)
    size = url_length
    longest = hosts = lengths = 0
    codings: list[bytes] = []
    for name, value in headers:
        line = len(name) + len(value) + 4  # ": " and CRLF
        size += line
        if line > longest:
            longest = line
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            lengths += 1
        elif name == b"transfer-encoding":
            codings += [coding.strip().lower() for coding in value.split(b",")]
    if longest > limits.max_header_line:
        detail = f"A header line is longer than {limits.max_header_line} bytes."
        return Refusal(HEAD_TOO_LARGE, detail)
    if size > limits.max_head:
        detail = f"The request head is larger than {limits.max_head} bytes."
        return Refusal(HEAD_TOO_LARGE, detail)
    if version not in HTTP_VERSIONS:
        return Refusal(VERSION_NOT_SUPPORTED, f"HTTP/{version} is not spoken on this port.")
    if method in REFUSED_METHODS:
        detail = f"{method.decode()} is refused by the gateway."
        return Refusal(METHOD_REFUSED, detail, [(b"allow", ALLOWED_METHODS)])
    if hosts > 1:
        return Refusal(MALFORMED, "The request has more than one Host header; send one.")
    if hosts == 0 and version == "1.1":
        return Refusal(MALFORMED, "HTTP/1.1 requests need a Host header (RFC 9112 §3.2).")
    if lengths > 1:
        return Refusal(MALFORMED, "The request has more than one Content-Length header.")
    if codings:
        return check_codings(codings, version, lengths)
    return None


def check_codings(codings: list[bytes], version: str, lengths: int) -> Refusal | None:
    """A request body is framed by exactly one final ``chunked``; nothing else is accepted."""
    if version == "1.0":
        return Refusal(MALFORMED, "HTTP/1.0 requests cannot use Transfer-Encoding.")
    if lengths:
        return Refusal(MALFORMED, "Send Content-Length or Transfer-Encoding, not both.")
    if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
        return Refusal(MALFORMED, "Transfer-Encoding must end with one 'chunked' coding.")
    if len(codings) > 1:
        return Refusal(CODING_NOT_IMPLEMENTED, "Only 'Transfer-Encoding: chunked' is accepted.")
    return None


def parse_refusal(error: httptools.HttpParserError) -> Refusal:
    """The answer to a request the parser (or one of Tollway's checks) rejected."""
    cause = error.__context__
    if isinstance(cause, Refusal):
        return cause
    if isinstance(error, httptools.HttpParserCallbackError) and cause is not None:
        logger.error("failure while reading a request", exc_info=cause)
        return Refusal(INTERNAL_ERROR, INTERNAL_ERROR.explanation)
    reason = str(error)
    if "HTTP version" in reason or "PRI" in reason:  # HTTP/1.2+, or an HTTP/2 preface
        return Refusal(VERSION_NOT_SUPPORTED, "This port speaks HTTP/1.1 and HTTP/1.0 only.")
    return Refusal(MALFORMED, f"The request could not be parsed: {reason}.")
