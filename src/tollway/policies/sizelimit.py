"""request-size-limit: refuse request bodies over ``max_bytes`` with 413
``/-/problems/request-too-large``, from ``Content-Length`` before anything is forwarded, or,
for bodies sent without a length, as soon as the limit is crossed (on both transports; without
this policy ``TOLLWAY_MAX_BODY_BYTES`` applies)."""

from __future__ import annotations

from pydantic import Field

from tollway.policies.base import PolicyConfig
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register


class RequestSizeConfig(PolicyConfig):
    max_bytes: int = Field(ge=0, description="Largest request body accepted, in bytes.")


class RequestSizePolicy:
    kind = "request-size-limit"
    phase = Phase.BODY
    slot = "max_body"
    merge = Merge.SMALLEST

    def __init__(self, config: RequestSizeConfig, context: BuildContext) -> None:
        self.max_bytes = config.max_bytes

    @property
    def value(self) -> int:
        """What the chain keeps: the largest body accepted (the smallest of all scopes wins)."""
        return self.max_bytes


register("request-size-limit", RequestSizeConfig, RequestSizePolicy)
