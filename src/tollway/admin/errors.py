"""The admin API's answers when something is wrong: RFC 9457 problem+json, never a traceback.

Every problem type is registered, so ``/-/problems/<slug>`` explains it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tollway.config.edit import PreconditionFailed
from tollway.config.loader import ConfigError, place
from tollway.errors import Conflict, NotFound, UserError
from tollway.portal.edge import StartWatch
from tollway.problems import PROBLEM_CONTENT_TYPE, ProblemType, problem_body, register_problem
from tollway.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("tollway.admin")


def _problem(slug: str, title: str, status: int, explanation: str) -> ProblemType:
    return register_problem(ProblemType(f"admin-{slug}", title, status, explanation))


BAD_REQUEST = _problem(
    "bad-request", "Bad request", 400, "The request cannot be read: fix its syntax."
)
UNAUTHORIZED = _problem(
    "unauthorized",
    "Admin token required",
    401,
    "Send 'Authorization: Bearer twa_...' with a live admin token (tollway token create).",
)
FORBIDDEN = _problem(
    "forbidden", "Not allowed", 403, "This token may only read: changes need a read-write token."
)
NOT_FOUND = _problem("not-found", "Not found", 404, "No such admin resource.")
METHOD_NOT_ALLOWED = _problem(
    "method-not-allowed", "Method not allowed", 405, "This resource does not take this method."
)
CONFLICT = _problem(
    "conflict",
    "Conflict",
    409,
    "The change clashes with the current state (a name or path taken, a thing still in use).",
)
PRECONDITION_FAILED = _problem(
    "precondition-failed",
    "Precondition failed",
    412,
    "The resource changed since you read it: read it again (new ETag), then retry.",
)
INVALID = _problem(
    "invalid", "Invalid request", 422, "Some fields are invalid; 'errors' names each of them."
)
TOO_MANY = _problem(
    "too-many-attempts",
    "Too many failed attempts",
    429,
    "Too many requests with a wrong admin token came from your address. Wait and retry.",
)
UNAVAILABLE = _problem(
    "unavailable", "Admin API unavailable", 503, "The database cannot be reached right now."
)
INTERNAL = _problem(
    "error", "Internal error", 500, "Tollway failed to handle this request; it was logged."
)

STATUS_PROBLEMS = {
    p.status: p
    for p in (
        BAD_REQUEST,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        CONFLICT,
        PRECONDITION_FAILED,
        INVALID,
        TOO_MANY,
        UNAVAILABLE,
    )
}


class Problem(Exception):
    """Raised by routes and dependencies: answered as problem+json."""

    def __init__(
        self,
        problem: ProblemType,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail or problem.explanation)
        self.problem = problem
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def problem_response(
    problem: ProblemType,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
) -> Response:
    extra: dict[str, Any] = {"errors": errors} if errors else {}
    body = problem_body(problem, detail, **extra)
    response = Response(body, problem.status, media_type=PROBLEM_CONTENT_TYPE.decode())
    response.headers.update(headers or {})
    response.headers["cache-control"] = "no-store"
    return response


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) if not isinstance(p, int) else p for p in loc]
    return place(parts)


def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid"))
        errors.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or None
    body_error = any(e.get("type") == "json_invalid" for e in exc.errors())
    if body_error:
        return problem_response(BAD_REQUEST, "the request body is not valid JSON", errors=errors)
    return problem_response(INVALID, detail, errors=errors)


def _config_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConfigError)
    errors = []
    for message in exc.messages:
        field, _, text = message.partition(": ")
        errors.append({"field": field, "message": text} if text else {"message": message})
    return problem_response(INVALID, str(exc), errors=errors)


def _user_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UserError)
    if isinstance(exc, PreconditionFailed):
        return problem_response(PRECONDITION_FAILED, str(exc))
    if isinstance(exc, Conflict):
        return problem_response(CONFLICT, str(exc))
    if isinstance(exc, NotFound):
        return problem_response(NOT_FOUND, str(exc))
    return problem_response(INVALID, str(exc))


def _problem_raised(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.problem, exc.detail, headers=exc.headers, errors=exc.errors)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem = STATUS_PROBLEMS.get(exc.status_code, BAD_REQUEST)
    headers = dict(exc.headers or {})
    detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
    return problem_response(problem, detail, headers=headers)


def _stale(request: Request, exc: Exception) -> Response:
    return problem_response(PRECONDITION_FAILED)


def _integrity(request: Request, exc: Exception) -> Response:
    return problem_response(CONFLICT, "the change clashes with another one made at the same time")


def _unavailable(request: Request, exc: Exception) -> Response:
    logger.error("admin API: database unreachable (%s)", type(exc).__name__)
    return problem_response(UNAVAILABLE, headers={"retry-after": "30"})


class CatchAll:
    """Innermost safety net: an unexpected exception becomes a 500 problem (logged without
    the request's content), never a traceback for the client or a crash of the gateway."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = StartWatch(send)
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            logger.error(
                "admin API: %s on %s %s", type(exc).__name__, scope.get("method"), scope["path"]
            )
            if not watch.started:
                await problem_response(INTERNAL)(scope, receive, send)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(UserError, _user_error)
    app.add_exception_handler(Problem, _problem_raised)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(StaleDataError, _stale)
    app.add_exception_handler(IntegrityError, _integrity)
    for error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(error, _unavailable)
    app.add_middleware(CatchAll)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem answers."""
    return {
        status: {
            "description": STATUS_PROBLEMS[status].title,
            "content": {PROBLEM_CONTENT_TYPE.decode(): {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
