"""timeout: answer 504 ``/-/problems/backend-timeout`` when the backend has not answered within
``seconds`` (overrides the backend's ``read_timeout`` for this scope; the most specific wins)."""

from __future__ import annotations

from pydantic import Field

from tollway.policies.base import PolicyConfig
from tollway.policies.registry import BuildContext, register


class TimeoutConfig(PolicyConfig):
    seconds: float = Field(gt=0, le=3600, description="Seconds to wait for the backend.")


class TimeoutPolicy:
    kind = "timeout"

    def __init__(self, config: TimeoutConfig, context: BuildContext) -> None:
        self.seconds = config.seconds


register("timeout", TimeoutConfig, TimeoutPolicy)
