"""Tollway's own endpoints under ``/-/``: health, readiness and the problem type pages."""

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tollway import problems

ExceptionHandler = Callable[[Request, Exception], Any]


def problem_response(problem: problems.ProblemType, detail: str | None = None) -> Response:
    return Response(
        problems.problem_body(problem, detail),
        status_code=problem.status,
        media_type="application/problem+json",
    )


METHOD_NOT_ALLOWED = problems.register_problem(
    problems.ProblemType(
        "method-not-allowed",
        "Method not allowed",
        405,
        "This resource does not accept this method.",
    )
)


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return problem_response(METHOD_NOT_ALLOWED)
    return problem_response(problems.NOT_FOUND)


def problem_exception_handlers() -> dict[Any, ExceptionHandler]:
    """Starlette handlers so Tollway's own apps answer 404/405 as problem+json too."""
    return {404: _http_exception, 405: _http_exception}


Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def create_internal_app(
    readiness: Readiness, metrics: Callable[[], bytes] | None = None
) -> Starlette:
    started = time.time()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_seconds": round(time.time() - started, 1)})

    async def ready(request: Request) -> Response:
        ok, body = readiness()
        if ok:
            return JSONResponse({"status": "ready", **body})
        return JSONResponse({"status": "not ready", **body}, status_code=503)

    async def prometheus(request: Request) -> Response:
        if metrics is None:
            return problem_response(problems.NOT_FOUND)
        return Response(metrics(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def problem_index(request: Request) -> Response:
        items = "".join(
            f'<li><a href="{escape(p.uri)}">{escape(p.slug)}</a>: {escape(p.title)}</li>'
            for p in sorted(problems.ALL_PROBLEMS.values(), key=lambda p: p.slug)
        )
        return HTMLResponse(f"<!doctype html><title>Problem types</title><ul>{items}</ul>")

    async def problem_page(request: Request) -> Response:
        problem = problems.ALL_PROBLEMS.get(request.path_params["slug"])
        if problem is None:
            return problem_response(problems.NOT_FOUND)
        return HTMLResponse(
            f"<!doctype html><title>{escape(problem.title)}</title>"
            f"<h1>{escape(problem.title)} ({problem.status})</h1>"
            f"<p>{escape(problem.explanation)}</p>"
            f"<p>Problem type <code>{escape(problem.uri)}</code>.</p>"
        )

    return Starlette(
        routes=[
            Route("/-/health", health),
            Route("/-/ready", ready),
            Route("/-/metrics", prometheus),
            Route("/-/problems", problem_index),
            Route("/-/problems/{slug}", problem_page),
        ],
        exception_handlers=problem_exception_handlers(),
    )
