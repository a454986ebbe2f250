"""Recipe ideas from reddit-like sources served by a local HTTP server (never the internet)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.servers import serve_in_thread
from tollway.samples.recipes import create_app
from tollway.types import Receive, Scope, Send

from .conftest import make_settings, new_user

pytestmark = pytest.mark.anyio


def listing(*titles: str) -> bytes:
    children = [
        {"data": {"title": t, "score": 10 * i, "url": f"https://ex.test/{i}"}}
        for i, t in enumerate(titles)
    ]
    return json.dumps({"kind": "Listing", "data": {"children": children}}).encode()


class IdeasSource:
    """A tiny ASGI app posing as reddit: good, broken, non-JSON, slow and paired sources."""

    def __init__(self) -> None:
        self.pair_arrived = 0
        self.pair_ready: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        if path == "/slow":
            # Never answers; returns once the client gives up and disconnects.
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        if path.startswith("/pair/"):
            await self._wait_for_both()
        status, body = {
            "/r/recipes": (200, listing("Pho", "Ramen")),
            "/r/easy": (200, listing("Toast")),
            "/broken": (503, b"down"),
            "/html": (200, b"<html>not json</html>"),
            "/pair/a": (200, listing("A")),
            "/pair/b": (200, listing("B")),
        }.get(path, (404, b"no"))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def _wait_for_both(self) -> None:
        # Each paired request waits for the other: sequential fetching would never finish.
        if self.pair_ready is None:
            self.pair_ready = asyncio.Event()
        self.pair_arrived += 1
        if self.pair_arrived == 2:
            self.pair_ready.set()
        await self.pair_ready.wait()


@pytest.fixture(scope="module")
def source_url() -> Iterator[str]:
    with serve_in_thread(IdeasSource(), lifespan="off") as url:
        yield url


async def get_ideas(sqlite_url: str, sources: list[str], timeout: float = 5.0) -> httpx.Response:
    app: FastAPI = create_app(
        make_settings(sqlite_url, ideas_sources=sources, ideas_timeout=timeout)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://recipes.test") as client:
            headers = await new_user(client, "ada@example.com")
            return await client.get("/api/v1/recipes/ideas/", headers=headers)


async def test_ideas_from_every_source_in_order(sqlite_url: str, source_url: str) -> None:
    sources = [f"{source_url}/r/recipes", f"{source_url}/r/easy"]
    response = await get_ideas(sqlite_url, sources)
    assert response.status_code == 200
    got = response.json()["sources"]
    assert [s["source"] for s in got] == sources
    assert [[i["title"] for i in s["ideas"]] for s in got] == [["Pho", "Ramen"], ["Toast"]]
    assert got[0]["ideas"][1] == {"title": "Ramen", "score": 10, "url": "https://ex.test/1"}


async def test_sources_are_fetched_concurrently(sqlite_url: str, source_url: str) -> None:
    response = await get_ideas(sqlite_url, [f"{source_url}/pair/a", f"{source_url}/pair/b"])
    assert response.status_code == 200
    assert [s["ideas"][0]["title"] for s in response.json()["sources"]] == ["A", "B"]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/broken", "ideas source 2 (127.0.0.1) answered HTTP 503"),
        ("/html", "ideas source 2 (127.0.0.1) did not return a reddit-like JSON listing"),
    ],
)
async def test_failing_source_is_a_502_problem(
    sqlite_url: str, source_url: str, path: str, why: str
) -> None:
    response = await get_ideas(sqlite_url, [f"{source_url}/r/easy", f"{source_url}{path}"])
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/-/problems/ideas-source-failed"
    assert response.json()["detail"] == why


async def test_unreachable_source_is_a_502(sqlite_url: str) -> None:
    response = await get_ideas(sqlite_url, ["http://127.0.0.1:9/r/recipes"])
    assert response.status_code == 502
    assert response.json()["detail"] == "ideas source 1 (127.0.0.1) could not be reached"


async def test_slow_source_times_out_as_504(sqlite_url: str, source_url: str) -> None:
    response = await get_ideas(
        sqlite_url, [f"{source_url}/r/easy", f"{source_url}/slow"], timeout=0.3
    )
    assert response.status_code == 504
    assert response.json()["type"] == "/-/problems/ideas-timeout"


async def test_ideas_need_a_signed_in_user(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/recipes/ideas/")).status_code == 401
