"""Recipe ideas: the top posts of several reddit-like JSON sources, fetched concurrently.

A source that cannot be reached, answers with an error or with something that is not a reddit
listing makes the whole request a 502; sources that together take longer than the timeout make
it a 504. Problems name the source by position and host, never by its full URL.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from .problems import Problem
from .schemas import IdeaPublic, IdeaSourcePublic, IdeasPublic

USER_AGENT = "tollway-recipes-sample/1.0"


class _Post(BaseModel):
    title: str
    score: int
    url: str


class _Child(BaseModel):
    data: _Post


class _ListingData(BaseModel):
    children: list[_Child]


class _Listing(BaseModel):
    """The part of reddit's ``top.json`` listing the ideas use."""

    data: _ListingData


def _name(index: int, url: str) -> str:
    return f"ideas source {index + 1} ({urlsplit(url).hostname or 'no host'})"


def _failed(index: int, url: str, why: str) -> Problem:
    return Problem(502, "ideas-source-failed", f"{_name(index, url)} {why}")


async def fetch_source(client: httpx.AsyncClient, index: int, url: str) -> IdeaSourcePublic:
    """The posts of one source; raises a 502 ``Problem`` when it fails."""
    try:
        response = await client.get(url, headers={"User-Agent": USER_AGENT})
    except httpx.TimeoutException:
        raise Problem(504, "ideas-timeout", f"{_name(index, url)} did not answer in time") from None
    except httpx.HTTPError:
        raise _failed(index, url, "could not be reached") from None
    if response.status_code != 200:
        raise _failed(index, url, f"answered HTTP {response.status_code}")
    try:
        listing = _Listing.model_validate_json(response.content)
    except ValidationError:
        raise _failed(index, url, "did not return a reddit-like JSON listing") from None
    ideas = [IdeaPublic(**child.data.model_dump()) for child in listing.data.children]
    return IdeaSourcePublic(source=url, ideas=ideas)


async def fetch_ideas(client: httpx.AsyncClient, sources: list[str], limit: float) -> IdeasPublic:
    """Ideas from every source at once (``asyncio.gather``), within ``limit`` seconds overall."""
    try:
        async with asyncio.timeout(limit):
            results = await asyncio.gather(
                *(fetch_source(client, i, url) for i, url in enumerate(sources)),
                return_exceptions=True,
            )
    except TimeoutError:
        raise Problem(
            504, "ideas-timeout", f"ideas sources did not answer within {limit:g} s"
        ) from None
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return IdeasPublic(sources=[r for r in results if isinstance(r, IdeaSourcePublic)])
