"""Every error as ``application/problem+json`` (RFC 9457), FastAPI's own errors included."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .schemas import ProblemOut

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/-/problems/"


class Problem(HTTPException):
    """An HTTP error with a stable problem ``type`` slug, e.g. ``recipe-not-found``."""

    def __init__(
        self, status: int, slug: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.slug = slug


def problem_response(
    status: int, slug: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The problem+json response for ``status`` with a ``type`` built from ``slug``."""
    problem = ProblemOut(
        type=PROBLEM_BASE + slug, title=HTTPStatus(status).phrase, status=status, detail=detail
    )
    return JSONResponse(
        problem.model_dump(), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = getattr(exc, "slug", None) or HTTPStatus(exc.status_code).phrase.lower().replace(
        " ", "-"
    )
    return problem_response(exc.status_code, slug, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(422, "invalid-request", validation_detail(exc))


def validation_detail(exc: RequestValidationError) -> str:
    """One line per invalid field: where it is and what is wrong, never the input value."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_problem_handlers(app: FastAPI) -> None:
    """Route HTTP and validation errors through :func:`problem_response`."""
    # Starlette's class: routing 404/405 and FastAPI's body-parsing 400 are raised as that.
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses`` as problem+json (a ``model`` would say JSON)."""
    schema = ProblemOut.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }
