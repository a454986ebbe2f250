"""Recipes: reading, searching, submitting, and the ownership rules for changes."""

from __future__ import annotations

import httpx
import pytest

from tests.clocks import Ticking

from .conftest import add_recipe, new_user

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def test_submitter_is_the_caller_and_my_recipes_lists_only_mine(
    client: httpx.AsyncClient,
) -> None:
    ada = await new_user(client, "ada@example.com")
    bob = await new_user(client, "bob@example.com")
    me = (await client.get("/api/v1/auth/me", headers=ada)).json()
    soup = await add_recipe(client, ada, "Soup")
    await add_recipe(client, bob, "Stew")

    assert soup["submitter_id"] == me["id"]
    assert (await client.get(f"/api/v1/recipes/{soup['id']}")).json() == soup
    mine = await client.get("/api/v1/recipes/my-recipes/", headers=ada)
    assert [r["label"] for r in mine.json()["results"]] == ["Soup"]


async def test_submitting_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    body = {"label": "Soup", "source": "Kitchen", "url": "https://example.com/soup"}
    response = await client.post("/api/v1/recipes/", json=body)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert (await client.get("/api/v1/recipes/search/")).json()["results"] == []


async def test_a_submitter_id_in_the_body_is_rejected(client: httpx.AsyncClient) -> None:
    ada = await new_user(client, "ada@example.com")
    body = {"label": "S", "source": "K", "url": "https://example.com/", "submitter_id": 1}
    response = await client.post("/api/v1/recipes/", json=body, headers=ada)
    assert response.status_code == 422
    assert "submitter_id" in response.json()["detail"]


async def test_owner_updates_and_deletes_own_recipe(client: httpx.AsyncClient) -> None:
    ada = await new_user(client, "ada@example.com")
    soup = await add_recipe(client, ada, "Soup")
    url = f"/api/v1/recipes/{soup['id']}"

    changed = await client.put(url, json={"label": "Tomato soup"}, headers=ada)
    assert changed.status_code == 200
    assert changed.json() == {**soup, "label": "Tomato soup"}

    deleted = await client.delete(url, headers=ada)
    assert deleted.status_code == 204
    assert (await client.get(url)).status_code == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_others_recipe_is_403_and_unchanged(client: httpx.AsyncClient, method: str) -> None:
    ada = await new_user(client, "ada@example.com")
    bob = await new_user(client, "bob@example.com")
    soup = await add_recipe(client, ada, "Soup")
    url = f"/api/v1/recipes/{soup['id']}"

    response = await client.request(method, url, json={"label": "Mine now"}, headers=bob)
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "/-/problems/not-your-recipe"
    assert (await client.get(url)).json() == soup


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_missing_recipe_is_404_problem(client: httpx.AsyncClient, method: str) -> None:
    ada = await new_user(client, "ada@example.com")
    response = await client.request(method, "/api/v1/recipes/999", json={"label": "x"}, headers=ada)
    assert response.status_code == 404
    assert response.json()["detail"] == "no recipe with id 999"


async def test_search_by_keyword_any_case_and_limited(client: httpx.AsyncClient) -> None:
    ada = await new_user(client, "ada@example.com")
    for label in ["Chicken Soup", "chicken pie", "Tofu curry", "100% Chicken"]:
        await add_recipe(client, ada, label)

    async def labels(query: str) -> list[str]:
        response = await client.get(f"/api/v1/recipes/search/{query}")
        assert response.status_code == 200
        return [r["label"] for r in response.json()["results"]]

    assert await labels("?keyword=CHICKEN") == ["Chicken Soup", "chicken pie", "100% Chicken"]
    assert await labels("?keyword=chicken&max_results=2") == ["Chicken Soup", "chicken pie"]
    assert await labels("?keyword=%25") == ["100% Chicken"]  # "%" matches itself only
    assert await labels("?keyword=") == await labels("") == await labels("?max_results=100")
    assert len(await labels("")) == 4


@pytest.mark.parametrize("query", ["max_results=0", "max_results=many", "max_results=101"])
async def test_bad_max_results_is_422_naming_it(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/api/v1/recipes/search/?{query}")
    assert response.status_code == 422
    assert "query.max_results" in response.json()["detail"]


@pytest.mark.parametrize("clock", [Ticking(0.25)])
async def test_every_response_has_x_process_time(client: httpx.AsyncClient) -> None:
    # the middleware reads the clock when the request arrives and when the head is sent
    for url in ["/api/v1/recipes/search/", "/api/v1/recipes/999", "/", "/no/such/page"]:
        assert (await client.get(url)).headers["x-process-time"] == "0.250000"
