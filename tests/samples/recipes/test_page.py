"""The HTML home page lists recipes and escapes what users typed."""

from __future__ import annotations

import httpx
import pytest

from .conftest import add_recipe, new_user

pytestmark = pytest.mark.anyio


async def test_home_page_lists_recipes_escaped(client: httpx.AsyncClient) -> None:
    ada = await new_user(client, "ada@example.com")
    await add_recipe(client, ada, "Plain soup")
    await add_recipe(client, ada, '<script>alert("x")</script> & pie')

    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Plain soup" in response.text
    assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; pie" in response.text


async def test_empty_home_page_says_so(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert "No recipes yet." in response.text
