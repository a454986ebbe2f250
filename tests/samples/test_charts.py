"""The charts sample backend: images against owned baselines, validation, headers, OpenAPI.

Baselines live in ``tests/samples/baselines/``. After an intended change to how charts look, run
``TOLLWAY_UPDATE_BASELINES=1 pytest tests/samples/test_charts.py`` to rewrite them (those tests
then skip), look at the new PNGs, and commit them.
"""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from matplotlib import image

from tollway.samples import charts
from tollway.samples.chart_params import MAX_ITEMS
from tollway.samples.charts import create_app

pytestmark = pytest.mark.anyio

BASELINES = Path(__file__).parent / "baselines"
UPDATE_BASELINES = os.environ.get("TOLLWAY_UPDATE_BASELINES") == "1"
# RMS of 0-255 channel differences. matplotlib rasterises with its own bundled FreeType and the
# DejaVu Sans it ships, so the same pinned matplotlib draws the same pixels on every machine; the
# tolerance absorbs anti-aliasing noise, while changing one letter of a label already costs > 1.
RMS_TOLERANCE = 0.5
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BAR = "/charts/bar?xvalues=Mon,Tue,Wed,Thu&yvalues=3,7.5,-2,5&title=Visits&xlabel=Day&ylabel=k"
PIE = "/charts/pie?values=1,2,3,4&labels=Red,Green,Blue,Grey&title=Share"


async def get(app: FastAPI, url: str) -> httpx.Response:
    """GET ``url`` from ``app``, in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://charts.test") as client:
        return await client.get(url)


def pixels(png: bytes) -> Any:
    """The decoded RGBA pixels of ``png`` on a 0-255 scale."""
    return image.imread(BytesIO(png), format="png") * 255.0


def rms_difference(first: bytes, second: bytes) -> float:
    a, b = pixels(first), pixels(second)
    assert a.shape == b.shape, f"image sizes differ: {a.shape} vs {b.shape}"
    return float(np.sqrt(np.mean((a - b) ** 2)))


def matches_baseline(png: bytes, name: str) -> float:
    """The RMS difference from baseline ``name`` (rewriting it first when updating)."""
    path = BASELINES / name
    if UPDATE_BASELINES:
        BASELINES.mkdir(exist_ok=True)
        path.write_bytes(png)
        pytest.skip(f"rewrote baseline {path.name}")
    return rms_difference(png, path.read_bytes())


@pytest.mark.parametrize(("url", "baseline"), [(BAR, "bar.png"), (PIE, "pie.png")])
async def test_chart_matches_its_baseline(url: str, baseline: str) -> None:
    response = await get(create_app(), url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert pixels(response.content).shape == (480, 640, 4)
    assert matches_baseline(response.content, baseline) <= RMS_TOLERANCE


async def test_a_different_chart_is_far_from_the_baseline() -> None:
    """The comparison can fail: other values, or one letter of a label or title, exceed it."""
    baseline = (BASELINES / "pie.png").read_bytes()
    for url in (
        "/charts/pie?values=4,3,2,1&labels=Red,Green,Blue,Grey&title=Share",
        "/charts/pie?values=1,2,3,4.01&labels=Red,Green,Blue,Grey&title=Share",
        "/charts/pie?values=1,2,3,4&labels=Red,Green,Blue,Gray&title=Share",
        "/charts/pie?values=1,2,3,4&labels=Red,Green,Blue,Grey&title=Shares",
    ):
        response = await get(create_app(), url)
        assert rms_difference(response.content, baseline) > 2 * RMS_TOLERANCE, url


@pytest.mark.parametrize(("url", "suffix"), [(BAR, "png"), (PIE, "png")])
async def test_image_headers_make_it_inline_and_cacheable(url: str, suffix: str) -> None:
    response = await get(create_app(), url)
    assert response.headers["content-disposition"] == f"inline; filename=chart.{suffix}"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("url", [BAR, PIE])
async def test_svg_format(url: str) -> None:
    response = await get(create_app(), url + "&format=svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.headers["content-disposition"] == "inline; filename=chart.svg"
    root = ET.fromstring(response.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == ("460.8pt", "345.6pt")
    assert b"Visits" in response.content or b"Share" in response.content


@pytest.mark.parametrize("chart_format", ["png", "svg"])
async def test_same_query_gives_the_same_bytes(chart_format: str) -> None:
    """Caching is honest only if the image does not depend on when it was drawn."""
    first = await get(create_app(), f"{PIE}&format={chart_format}")
    second = await get(create_app(), f"{PIE}&format={chart_format}")
    assert first.content == second.content


async def test_repeated_x_values_keep_separate_bars() -> None:
    repeated = await get(create_app(), "/charts/bar?xvalues=a,a&yvalues=1,2")
    distinct = await get(create_app(), "/charts/bar?xvalues=a,b&yvalues=1,2")
    assert repeated.status_code == distinct.status_code == 200
    # Same bars, only one tick label differs (RMS ~1.5): merged categories would redraw the bars.
    assert 2 * RMS_TOLERANCE < rms_difference(repeated.content, distinct.content) < 5


@pytest.mark.parametrize(
    "url",
    [
        "/charts/pie?values=0,1",
        "/charts/pie?values=3.4028235e38,3.4028235e38",
        "/charts/pie?values=1e-300",
        "/charts/pie?values=1,2&labels=%24%5Cfrac%7B%24,%24x%5E%24&title=%24a%24",
        "/charts/bar?xvalues=%24%5Cfrac%7B%24,b&yvalues=1,2&xlabel=%24x%5E%24",
        "/charts/pie?values=1&labels=",
        "/charts/bar?xvalues=a,b&yvalues=-3.4028235e38,3.4028235e38",
        "/charts/bar?xvalues=%C3%A9t%C3%A9,x&yvalues=+1,.5",
        "/charts/bar?xvalues=,&yvalues=0,0&title=&xlabel=&ylabel=",
        f"/charts/bar?xvalues={','.join('x' * MAX_ITEMS)}&yvalues={','.join('1' * MAX_ITEMS)}",
        "/charts/pie?values=1&title=" + "t" * 30,
    ],
)
async def test_edge_inputs_still_draw(url: str) -> None:
    response = await get(create_app(), url)
    assert response.status_code == 200, response.text
    assert response.content.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("url", "parameter", "message"),
    [
        (
            "/charts/pie?values=1,2,3&labels=a,b",
            "labels",
            "Labels must be specified for each value",
        ),
        ("/charts/pie?values=0", "values", "Cannot create a pie chart with single value of 0"),
        ("/charts/pie?values=0,0.0,+0, 0e5", "values", "values are all 0"),
        ("/charts/pie?values=", "values", "at least one number"),
        ("/charts/pie", "values", "Field required"),
        ("/charts/pie?values=-1,2", "values", "'-1' is negative; pie values must be 0 or more"),
        ("/charts/pie?values=3.5e38", "values", "outside the allowed range"),
        (
            "/charts/pie?values=1e999",
            "values",
            "'1e999' is outside the allowed range 0..3.40282e+38",
        ),
        ("/charts/pie?values=%D9%A3", "values", "is not a plain decimal number"),
        ("/charts/pie?values=nan", "values", "'nan' is not a finite number"),
        ("/charts/pie?values=1,inf", "values", "'inf' is not a finite number"),
        ("/charts/pie?values=1,-Infinity", "values", "'-Infinity' is not a finite number"),
        ("/charts/pie?values=1,two", "values", "'two' is not a plain decimal number"),
        ("/charts/pie?values=1,,2", "values", "'' is not a plain decimal number"),
        ("/charts/pie?values=1_000", "values", "'1_000' is not a plain decimal number"),
        ("/charts/pie?values=1&title=" + "t" * 31, "title", "at most 30 characters"),
        ("/charts/pie?values=1&labels=" + "l" * 31, "labels", "longer than 30 characters"),
        ("/charts/pie?values=1&labels=%E4%B8%AD", "labels", "cannot draw: '中'"),
        ("/charts/pie?values=1&title=a%0Ab", "title", "cannot draw: '\\n'"),
        ("/charts/pie?values=1&format=gif", "format", "'png' or 'svg'"),
        ("/charts/bar?xvalues=a,b&yvalues=1", "xvalues", "2 xvalues for 1 yvalues"),
        ("/charts/bar?xvalues=a&yvalues=1,2", "xvalues", "1 xvalues for 2 yvalues"),
        ("/charts/bar?xvalues=a&yvalues=-3.5e38", "yvalues", "outside the allowed range"),
        ("/charts/bar?xvalues=a&yvalues=NaN", "yvalues", "not a finite number"),
        ("/charts/bar?xvalues=a&yvalues=", "yvalues", "at least one number"),
        ("/charts/bar?yvalues=1", "xvalues", "Field required"),
        ("/charts/bar?xvalues=" + "x" * 31 + "&yvalues=1", "xvalues", "longer than 30"),
        ("/charts/bar?xvalues=a&yvalues=1&xlabel=" + "x" * 31, "xlabel", "at most 30"),
        ("/charts/bar?xvalues=a&yvalues=1&ylabel=%F0%9F%93%88", "ylabel", "cannot draw"),
        (
            f"/charts/bar?xvalues={','.join('x' * 51)}&yvalues=1",
            "xvalues",
            f"at most {MAX_ITEMS} items, got 51",
        ),
        ("/charts/pie?values=" + "1" * 2001, "values", "at most 2000 characters"),
    ],
)
async def test_bad_parameters_are_422_problems_naming_the_parameter(
    url: str, parameter: str, message: str
) -> None:
    response = await get(create_app(), url)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/-/problems/invalid-chart-parameters"
    assert problem["status"] == 422
    assert problem["parameters"] == [parameter]
    assert problem["detail"].startswith(f"{parameter}: ")
    assert message in problem["detail"]


async def test_every_missing_parameter_is_listed() -> None:
    response = await get(create_app(), "/charts/bar?title=x")
    assert response.status_code == 422
    assert response.json()["parameters"] == ["xvalues", "yvalues"]


async def test_huge_input_is_not_echoed_back() -> None:
    response = await get(create_app(), "/charts/pie?values=" + "9" * 500 + "x")
    assert response.status_code == 422
    assert len(response.json()["detail"]) < 100


async def test_rendering_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = charts.render
    threads: list[threading.Thread] = []

    def spy(*args: Any) -> bytes:
        threads.append(threading.current_thread())
        return real_render(*args)

    monkeypatch.setattr(charts, "render", spy)
    response = await get(create_app(), PIE)
    assert response.status_code == 200
    assert len(threads) == 1
    assert threads[0] is not threading.current_thread()


async def test_gateway_app_serves_the_same_charts_without_the_prefix() -> None:
    fronted = await get(charts.gateway_app, PIE.removeprefix("/charts"))
    alone = await get(charts.app, PIE)
    assert fronted.status_code == alone.status_code == 200
    assert fronted.content == alone.content
    assert (await get(charts.gateway_app, PIE)).status_code == 404
    paths = (await get(charts.gateway_app, "/openapi.json")).json()["paths"]
    assert set(paths) == {"/bar", "/pie"}


@pytest.mark.parametrize("prefix", ["charts", "/charts/"])
def test_prefix_must_look_like_a_path(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        create_app(prefix)


async def test_openapi_documents_images_and_problems() -> None:
    doc = (await get(create_app(), "/openapi.json")).json()
    assert doc["info"]["title"] == "Charts"
    assert set(doc["paths"]) == {"/charts/bar", "/charts/pie"}
    expected_parameters = {
        "/charts/bar": ["xvalues", "yvalues", "title", "xlabel", "ylabel", "format"],
        "/charts/pie": ["values", "labels", "title", "format"],
    }
    for path, names in expected_parameters.items():
        operation = doc["paths"][path]["get"]
        assert [p["name"] for p in operation["parameters"]] == names
        ok = operation["responses"]["200"]
        assert set(ok["content"]) == {"image/png", "image/svg+xml"}
        assert set(ok["headers"]) == {"Content-Disposition", "Cache-Control"}
        problem = operation["responses"]["422"]["content"]
        assert set(problem) == {"application/problem+json"}
        schema = problem["application/problem+json"]["schema"]
        assert set(schema["required"]) == {"type", "title", "status", "detail", "parameters"}


def test_module_level_apps_for_uvicorn_and_the_gateway() -> None:
    assert isinstance(charts.app, FastAPI)
    assert isinstance(charts.gateway_app, FastAPI)
