"""The charts sample API: bar and pie charts as PNG (or SVG) images from query parameters.

A FastAPI port of the user's APIFlask "Charts API" (seeds 001/002), keeping its paths and
parameter names: ``GET /charts/bar?xvalues=a,b,c&yvalues=1,2,3&title=&xlabel=&ylabel=`` and
``GET /charts/pie?values=1,2,3&labels=a,b,c&title=``, plus ``format=svg``. Charts are drawn with
matplotlib's ``Figure`` (never pyplot) in a worker thread so the event loop keeps serving, and
are cacheable: the same query always gives the same image. Every bad parameter, including the ones
FastAPI itself rejects, is a 422 ``application/problem+json`` naming the parameter.

Run it alone with ``uvicorn tollway.samples.charts:app``. Behind the gateway use
``tollway.samples.charts:gateway_app``, the same API without the ``/charts`` prefix: the gateway
strips an API's prefix before calling an in-process app, so the API at ``/charts`` serves
``/charts/bar`` without doubling the prefix.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tollway.samples.chart_params import (
    LABEL,
    MAX_ITEMS,
    MAX_LIST_CHARS,
    MAX_TEXT,
    SIGNED_NUMBER,
    UNSIGNED_NUMBER,
    ChartParameterError,
    bar_chart,
    list_pattern,
    pie_chart,
)
from tollway.samples.chart_rendering import MEDIA_TYPES, Chart, ChartFormat, render

CACHE_MAX_AGE = 86400
INVALID_PARAMETERS_TYPE = "/-/problems/invalid-chart-parameters"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemOut(BaseModel):
    """An RFC 9457 problem detail for parameters that cannot make a chart."""

    type: str = Field(description="Stable URI identifying the problem.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="Each bad parameter and what to fix, '; '-separated.")
    parameters: list[str] = Field(description="Names of the parameters to fix.")


def problem_response(errors: list[tuple[str, str]]) -> JSONResponse:
    """The 422 problem+json response for ``(parameter, message)`` pairs."""
    problem = ProblemOut(
        type=INVALID_PARAMETERS_TYPE,
        title="Invalid chart parameters",
        status=422,
        detail="; ".join(f"{name}: {message}" for name, message in errors),
        parameters=list(dict.fromkeys(name for name, _ in errors)),
    )
    return JSONResponse(problem.model_dump(), status_code=422, media_type=PROBLEM_MEDIA_TYPE)


def _validation_errors(exc: RequestValidationError) -> list[tuple[str, str]]:
    """FastAPI's validation errors as ``(parameter, message)``; the parameter is the loc's end."""
    return [(str(error["loc"][-1]), str(error["msg"])) for error in exc.errors()]


async def chart_response(chart: Chart, chart_format: ChartFormat) -> Response:
    """Render ``chart`` off the event loop and wrap it as an inline, cacheable image."""
    content = await run_in_threadpool(render, chart, chart_format)
    headers = {
        "Content-Disposition": f"inline; filename=chart.{chart_format}",
        "Cache-Control": f"public, max-age={CACHE_MAX_AGE}",
    }
    return Response(content, media_type=MEDIA_TYPES[chart_format], headers=headers)


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


# Documented by hand: FastAPI would list a `model` under application/json, and images have none.
CHART_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The chart: PNG by default, SVG with format=svg.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/svg+xml": {"schema": {"type": "string"}},
        },
        "headers": {
            "Content-Disposition": _header("inline; filename=chart.png (or chart.svg)"),
            "Cache-Control": _header(f"public, max-age={CACHE_MAX_AGE}"),
        },
    },
    422: {
        "description": "A parameter cannot make a chart; the detail names it.",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": ProblemOut.model_json_schema()}},
    },
}


def _list(item: str, description: str, example: str) -> Any:
    # The pattern is documented, not enforced by FastAPI: the parser checks the same grammar and
    # says which item is wrong, where a failed regex match could only quote the regex.
    return Query(
        max_length=MAX_LIST_CHARS,
        description=description,
        examples=[example],
        json_schema_extra={"pattern": list_pattern(item)},
    )


XValues = Annotated[
    str, _list(LABEL, f"Comma-separated bar names, up to {MAX_ITEMS} of {MAX_TEXT} chars.", "a,b,c")
]
YValues = Annotated[
    str, _list(SIGNED_NUMBER, "Comma-separated bar heights, |v| <= 3.4028235e38.", "1,2,3")
]
PieValues = Annotated[
    str,
    _list(
        UNSIGNED_NUMBER, "Comma-separated wedge sizes, 0 <= v <= 3.4028235e38, not all 0.", "1,2,3"
    ),
]
PieLabels = Annotated[
    str | None, _list(LABEL, "Comma-separated labels, one per value; empty for none.", "a,b,c")
]


def _text(description: str, example: str) -> Any:
    return Query(max_length=MAX_TEXT, description=description, examples=[example])


Title = Annotated[str | None, _text("Chart title.", "Sales")]
XLabel = Annotated[str | None, _text("Label under the x axis.", "Month")]
YLabel = Annotated[str | None, _text("Label beside the y axis.", "Units")]
Format = Annotated[ChartFormat, Query(alias="format", description="Image format: png or svg.")]


def _check_prefix(prefix: str) -> str:
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"prefix {prefix!r} must be empty or like '/charts'")
    return prefix


def create_app(prefix: str = "/charts") -> FastAPI:
    """Build the charts API with its routes under ``prefix`` (``""`` for behind the gateway)."""
    base = _check_prefix(prefix)
    app = FastAPI(
        title="Charts",
        description="Sample API: bar and pie charts rendered by matplotlib as PNG or SVG.",
        version="1.0.0",
    )

    @app.exception_handler(ChartParameterError)
    async def _bad_parameter(request: Request, exc: ChartParameterError) -> JSONResponse:
        return problem_response([(exc.parameter, exc.message)])

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_errors(exc))

    @app.get(f"{base}/bar", response_class=Response, responses=CHART_RESPONSES)
    async def bar(
        xvalues: XValues,
        yvalues: YValues,
        title: Title = None,
        xlabel: XLabel = None,
        ylabel: YLabel = None,
        chart_format: Format = "png",
    ) -> Response:
        """A bar chart: one bar per x value, as high as the matching y value."""
        return await chart_response(
            bar_chart(xvalues, yvalues, title, xlabel, ylabel), chart_format
        )

    @app.get(f"{base}/pie", response_class=Response, responses=CHART_RESPONSES)
    async def pie(
        values: PieValues,
        labels: PieLabels = None,
        title: Title = None,
        chart_format: Format = "png",
    ) -> Response:
        """A pie chart: one wedge per value, optionally labelled."""
        return await chart_response(pie_chart(values, labels, title), chart_format)

    return app


app = create_app()
gateway_app = create_app(prefix="")
