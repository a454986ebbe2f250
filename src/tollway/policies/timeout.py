"""timeout: answer 504 ``/-/problems/backend-timeout`` when the backend's response head has not
arrived ``seconds`` after the request was forwarded (APIM's ``forward-request timeout``; the
most specific scope wins). The body then streams under the backend's idle ``read_timeout``.
Both transports enforce it: the fast exchange's timeout sweep and ``HttpBackend.forward``."""

from __future__ import annotations

from pydantic import Field

from tollway.policies.base import PolicyConfig
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register


class TimeoutConfig(PolicyConfig):
    seconds: float = Field(gt=0, le=3600, description="Seconds to wait for the backend.")


class TimeoutPolicy:
    kind = "timeout"
    phase = Phase.FORWARD
    slot = "timeout"
    merge = Merge.MOST_SPECIFIC

    def __init__(self, config: TimeoutConfig, context: BuildContext) -> None:
        self.seconds = config.seconds

    @property
    def value(self) -> float:
        """What the chain keeps: the seconds the backend has to send its response head."""
        return self.seconds


register("timeout", TimeoutConfig, TimeoutPolicy)
