"""The names sample backend: prefix matching, determinism, errors and its OpenAPI document."""

from __future__ import annotations

import random

import httpx
import pytest
from fastapi import FastAPI

from tollway.samples import names
from tollway.samples.names import NAMES, create_app

pytestmark = pytest.mark.anyio


async def get_all(app: FastAPI, *urls: str) -> list[httpx.Response]:
    """GET each URL in order from ``app``, in process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://names.test") as client:
        return [await client.get(url) for url in urls]


async def generate(app: FastAPI, count: int, starts_with: str | None = None) -> list[str]:
    """``count`` names from ``app``, asserting each response is a 200 ``{"name": ...}``."""
    query = "" if starts_with is None else f"?starts_with={starts_with}"
    responses = await get_all(app, *[f"/generate_name{query}"] * count)
    assert [r.status_code for r in responses] == [200] * count
    assert all(set(r.json()) == {"name"} for r in responses)
    return [r.json()["name"] for r in responses]


MYRT = {"Myrta", "Myrtice", "Myrtie", "Myrtis", "Myrtle"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("myrt", MYRT),
        ("MYRT", MYRT),
        ("mYrT", MYRT),
        ("noa", {"Noa", "Noah"}),
        ("NADIA", {"Nadia"}),
        ("x", {"Xander", "Xavier", "Xena", "Ximena", "Xiomara", "Xzavier"}),
    ],
)
async def test_prefix_match_ignores_case(prefix: str, expected: set[str]) -> None:
    got = await generate(create_app(random.Random(42)), 60, prefix)
    assert set(got) == expected


@pytest.mark.parametrize("prefix", ["ne", "ka", "br", "Ne", "KA"])
async def test_common_two_letter_prefixes_find_many_names(prefix: str) -> None:
    got = await generate(create_app(random.Random(42)), 20, prefix)
    assert all(name.casefold().startswith(prefix.casefold()) for name in got)
    assert len(set(got)) >= 10  # Faker's list has 40-165 names for each of these


async def test_upper_and_lower_prefix_give_the_same_names() -> None:
    lower = await generate(create_app(random.Random(42)), 20, "m")
    upper = await generate(create_app(random.Random(42)), 20, "M")
    assert lower == upper


async def test_without_prefix_names_come_from_the_whole_list() -> None:
    got = await generate(create_app(random.Random(42)), 50)
    assert set(got) <= set(NAMES)
    assert len({name[0] for name in got}) > 5


async def test_same_seed_gives_same_sequence() -> None:
    first = await generate(create_app(random.Random(42)), 20)
    second = await generate(create_app(random.Random(42)), 20)
    other = await generate(create_app(random.Random(7)), 20)
    assert first == second
    assert len(set(first)) > 1
    assert other != first


def test_list_has_seed_names_first_and_thousands_more() -> None:
    assert NAMES[:5] == ("Minnie", "Margaret", "Myrtle", "Noa", "Nadia")
    assert {name[0] for name in NAMES} == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert len(NAMES) == len(set(NAMES)) > 6000
    assert {"Olivia", "Liam", "Emma", "Noah", "Zoe"} <= set(NAMES)  # Faker's English names


async def test_a_prefix_longer_than_every_match_is_a_404() -> None:
    responses = await get_all(
        create_app(random.Random(42)),
        "/generate_name?starts_with=Nadia",
        "/generate_name?starts_with=Nadiaa",
    )
    assert [r.status_code for r in responses] == [200, 404]
    assert responses[0].json() == {"name": "Nadia"}


async def test_no_match_is_a_404_problem() -> None:
    (response,) = await get_all(create_app(random.Random(42)), "/generate_name?starts_with=zzz")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "/-/problems/name-not-found",
        "title": "No matching name",
        "status": 404,
        "detail": "no name starts with 'zzz'",
    }


async def test_prefix_longer_than_50_is_rejected() -> None:
    longest, too_long = "a" * 50, "a" * 51
    responses = await get_all(
        create_app(),
        f"/generate_name?starts_with={longest}",
        f"/generate_name?starts_with={too_long}",
    )
    assert [r.status_code for r in responses] == [404, 422]
    assert responses[1].json()["detail"][0]["loc"] == ["query", "starts_with"]


async def test_openapi_documents_the_operation() -> None:
    (response,) = await get_all(create_app(), "/openapi.json")
    doc = response.json()
    assert doc["info"]["title"] == "Names"
    assert doc["info"]["version"]
    operation = doc["paths"]["/generate_name"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/NameOut"}
    not_found = operation["responses"]["404"]["content"]["application/problem+json"]["schema"]
    assert set(not_found["required"]) == {"type", "title", "status", "detail"}
    (param,) = operation["parameters"]
    assert param["name"] == "starts_with"
    assert param["required"] is False


def test_module_level_app_for_uvicorn() -> None:
    assert isinstance(names.app, FastAPI)
