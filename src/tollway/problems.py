"""RFC 9457 problem responses: every error a client sees from the gateway, its policies and pages.

Outside ``gateway/`` so that policies and the portal can name problem types without importing it.

Each problem ``type`` is a stable relative URI under ``/-/problems/``; the gateway serves a short
page explaining it there. Bodies never contain stack traces or secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tollway.types import Headers, Send

PROBLEM_CONTENT_TYPE = b"application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str
    status: int
    explanation: str

    @property
    def uri(self) -> str:
        return f"/-/problems/{self.slug}"


MISSING_KEY = ProblemType(
    "missing-key",
    "Subscription key required",
    401,
    "This API needs a subscription key, sent in the API's key header (X-API-Key by default) "
    "or query parameter (subscription-key by default). Get one from the developer portal.",
)
INVALID_KEY = ProblemType(
    "invalid-key",
    "Invalid subscription key",
    401,
    "The key is not a valid active key: it may be mistyped, regenerated, or its subscription "
    "suspended or cancelled.",
)
FORBIDDEN_API = ProblemType(
    "api-not-in-subscription",
    "API not included in subscription",
    403,
    "The key is valid, but the product it was issued for does not include this API.",
)
NOT_FOUND = ProblemType(
    "not-found", "Not found", 404, "No API or gateway resource is served at this path."
)
OPERATION_NOT_FOUND = ProblemType(
    "operation-not-found",
    "Operation not found",
    404,
    "The API exists, but does not expose this method and path through the gateway.",
)
BAD_PATH = ProblemType(
    "bad-path",
    "Malformed request path",
    400,
    "The path contains encoded slashes, backslashes, NUL bytes, or '..' segments that climb "
    "above the root. Send a plain path.",
)
BACKEND_UNREACHABLE = ProblemType(
    "backend-unreachable",
    "Backend unreachable",
    502,
    "The gateway could not reach the API's backend, or the backend sent an invalid response.",
)
BACKEND_TIMEOUT = ProblemType(
    "backend-timeout",
    "Backend timed out",
    504,
    "The API's backend did not answer within its configured timeout.",
)
BACKEND_UNAVAILABLE = ProblemType(
    "backend-unavailable",
    "Backend unavailable",
    503,
    "Every instance of the API's backend is out of rotation (failed health checks or an open "
    "circuit breaker). Try again after the number of seconds in Retry-After.",
)
NOT_READY = ProblemType(
    "not-ready",
    "Gateway not ready",
    503,
    "The gateway has not loaded its configuration or cannot reach its store yet.",
)
IP_FORBIDDEN = ProblemType(
    "ip-forbidden",
    "Client address not allowed",
    403,
    "An ip-filter policy does not allow calls from your address.",
)
RATE_LIMITED = ProblemType(
    "rate-limited",
    "Too many requests",
    429,
    "A rate limit applies to these calls. Wait for the number of seconds in Retry-After; the "
    "RateLimit headers show how much room is left.",
)
QUOTA_EXCEEDED = ProblemType(
    "quota-exceeded",
    "Quota exceeded",
    429,
    "The quota named in the response is used up for this period. It resets at the start of the "
    "next period (Retry-After says when).",
)
INVALID_TOKEN = ProblemType(
    "invalid-token",
    "Invalid bearer token",
    401,
    "This API needs a valid JWT in 'Authorization: Bearer <token>' from its configured issuer.",
)
REQUEST_TOO_LARGE = ProblemType(
    "request-too-large",
    "Request body too large",
    413,
    "The request body is larger than this API accepts. Send a smaller body.",
)
CORS_FORBIDDEN = ProblemType(
    "cors-forbidden",
    "Cross-origin request not allowed",
    403,
    "The API's CORS policy does not allow this origin or method.",
)
LIMITS_UNAVAILABLE = ProblemType(
    "limits-unavailable",
    "Limits temporarily unavailable",
    503,
    "The shared store for rate limits is unreachable and the gateway is set to fail closed.",
)

ALL_PROBLEMS = {
    problem.slug: problem
    for problem in (
        MISSING_KEY,
        INVALID_KEY,
        FORBIDDEN_API,
        NOT_FOUND,
        OPERATION_NOT_FOUND,
        BAD_PATH,
        BACKEND_UNREACHABLE,
        BACKEND_TIMEOUT,
        BACKEND_UNAVAILABLE,
        NOT_READY,
        IP_FORBIDDEN,
        RATE_LIMITED,
        QUOTA_EXCEEDED,
        INVALID_TOKEN,
        REQUEST_TOO_LARGE,
        CORS_FORBIDDEN,
        LIMITS_UNAVAILABLE,
    )
}


def register_problem(problem: ProblemType) -> ProblemType:
    """Make a problem type (e.g. a policy's) documented under ``/-/problems/``."""
    ALL_PROBLEMS[problem.slug] = problem
    return problem


def problem_body(
    problem: ProblemType, detail: str | None = None, *, status: int | None = None, **extra: object
) -> bytes:
    body: dict[str, object] = {
        "type": problem.uri,
        "title": problem.title,
        "status": status or problem.status,
        "detail": detail or problem.explanation,
    }
    body.update(extra)
    return json.dumps(body).encode()


async def send_problem(
    send: Send,
    problem: ProblemType,
    detail: str | None = None,
    *,
    headers: Headers | None = None,
    status: int | None = None,
    **extra: object,
) -> None:
    """Send a complete problem+json response (``status`` overrides the type's default)."""
    body = problem_body(problem, detail, status=status, **extra)
    response_headers: Headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE),
        (b"content-length", str(len(body)).encode()),
    ]
    if headers:
        response_headers.extend(headers)
    start = {"type": "http.response.start", "status": status or problem.status}
    await send({**start, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
