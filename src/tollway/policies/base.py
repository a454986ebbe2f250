"""What every policy works with: the request context and the refusal a policy can return.

The order in which policies act is declared in ``tollway.policies.phases``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from tollway.grants import Grant
from tollway.problems import ProblemType
from tollway.types import Headers


class PolicyConfig(BaseModel):
    """Base of every policy's options: unknown options are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True)
class RequestContext:
    """One request as policies see it (built per request, never kept on a policy)."""

    method: str
    path: bytes  # below the API prefix
    headers: Headers  # as the client sent them (lower-case names)
    client_ip: str
    api_id: int
    now: float
    grant: Grant | None = None
    claims: dict[str, object] | None = None  # from validate-jwt
    cache: str = ""  # what the cache policy did: "hit", "miss", "bypass" ("" without one)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Reject:
    """A policy's refusal: a problem response, with extra headers and detail."""

    problem: ProblemType
    detail: str | None = None
    status: int | None = None
    headers: Headers = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
