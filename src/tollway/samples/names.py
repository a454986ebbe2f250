"""The names sample API: ``GET /generate_name`` returns a random first name.

A fixed version of the FastAPI app from the user's container-deployment walkthrough: the prefix
match is case-insensitive (``n`` and ``N`` both match Noa), and no match is a 404
``application/problem+json`` instead of the 500 that ``random.choice([])`` raised.

The names are the seed's five and the 6,800 English first names that the Faker package ships as
Python data (``faker.providers.person.en``, MIT licence; read from the installed package, never
downloaded), so two-letter prefixes such as ``ne``, ``ka`` or ``br`` all find names.

Run it alone with ``uvicorn tollway.samples.names:app``, or put it behind the gateway as the
in-process backend ``tollway.samples.names:app``.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from faker.providers.person.en import Provider as EnglishPersonProvider
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

SEED_NAMES = ("Minnie", "Margaret", "Myrtle", "Noa", "Nadia")
# Past every character a name can hold: the upper end of a prefix's range in sorted order.
LAST_CHARACTER = chr(0x10FFFF)


def first_names() -> tuple[str, ...]:
    """The seed's five names, then Faker's English first names (sorted, without repeats)."""
    faker_names = set(EnglishPersonProvider.first_names) - set(SEED_NAMES)
    return (*SEED_NAMES, *sorted(faker_names))


@dataclass(frozen=True)
class NameList:
    """First names in case-folded order, so a prefix finds its names by bisection."""

    names: tuple[str, ...]
    folded: tuple[str, ...]

    @classmethod
    def of(cls, names: Iterable[str]) -> NameList:
        ordered = sorted(set(names), key=lambda name: (name.casefold(), name))
        return cls(tuple(ordered), tuple(name.casefold() for name in ordered))

    def starting_with(self, prefix: str | None) -> Sequence[str]:
        """Names starting with ``prefix``, ignoring case; all names when it is empty or None."""
        if not prefix:
            return self.names
        wanted = prefix.casefold()
        low = bisect_left(self.folded, wanted)
        return self.names[low : bisect_left(self.folded, wanted + LAST_CHARACTER, low)]


NAMES: tuple[str, ...] = first_names()

MAX_PREFIX_LENGTH = 50
NAME_NOT_FOUND_TYPE = "/-/problems/name-not-found"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class NameOut(BaseModel):
    """A generated name."""

    name: str = Field(description="A first name.", examples=["Nadia"])


class ProblemOut(BaseModel):
    """An RFC 9457 problem detail."""

    type: str = Field(description="Stable URI identifying the problem.")
    title: str = Field(description="Short summary of the problem type.")
    status: int = Field(description="HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")


class NameNotFound(Exception):
    """No name starts with the requested prefix."""

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.prefix = prefix


def pick_name(rng: random.Random, names: NameList, prefix: str | None) -> str:
    """A random name starting with ``prefix``; raises ``NameNotFound`` when none does."""
    candidates = names.starting_with(prefix)
    if not candidates:
        raise NameNotFound(prefix or "")
    return rng.choice(candidates)


def name_not_found_response(exc: NameNotFound) -> JSONResponse:
    """The 404 problem+json response for a prefix that matches no name."""
    problem = ProblemOut(
        type=NAME_NOT_FOUND_TYPE,
        title="No matching name",
        status=404,
        detail=f"no name starts with {exc.prefix!r}",
    )
    return JSONResponse(problem.model_dump(), status_code=404, media_type=PROBLEM_MEDIA_TYPE)


# Documented by hand: a `model` in `responses` would be listed under application/json.
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No name starts with the prefix.",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": ProblemOut.model_json_schema()}},
    }
}

StartsWith = Annotated[
    str | None,
    Query(
        max_length=MAX_PREFIX_LENGTH,
        description="Only names starting with this prefix (case-insensitive).",
        examples=["n"],
    ),
]


def create_app(rng: random.Random | None = None, names: Iterable[str] = NAMES) -> FastAPI:
    """Build the names API; pass a seeded ``rng`` for a repeatable sequence of names."""
    chooser = rng if rng is not None else random.Random()
    name_list = NameList.of(names)
    app = FastAPI(
        title="Names",
        description=(
            "Sample API: random first names (Faker's English list and the seed's five), "
            "optionally by a case-insensitive prefix."
        ),
        version="1.0.0",
    )

    @app.exception_handler(NameNotFound)
    async def _not_found(request: Request, exc: NameNotFound) -> JSONResponse:
        return name_not_found_response(exc)

    @app.get(
        "/generate_name",
        response_model=NameOut,
        responses=NOT_FOUND_RESPONSE,
        summary="Generate a random name",
    )
    async def generate_name(starts_with: StartsWith = None) -> NameOut:
        """Return a random first name; with `starts_with`, one that starts with that prefix."""
        return NameOut(name=pick_name(chooser, name_list, starts_with))

    return app


app = create_app()
