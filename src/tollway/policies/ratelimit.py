"""rate-limit: at most ``calls`` per sliding ``period``, counted per subscription (default),
client IP, user (all of one developer's subscriptions), request header value, or API.

Produces: 429 ``/-/problems/rate-limited`` with ``Retry-After``; ``RateLimit-Policy`` and
``RateLimit`` headers (IETF httpapi draft) on every response unless ``hide_headers``. Calls
refused by any limit are not counted against the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, field_validator, model_validator

from tollway.policies.base import PolicyConfig, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register
from tollway.policies.windows import parse_rate, sliding_position
from tollway.stores.base import LimitCheck

COUNTER_KEY = re.compile(r"^(subscription|ip|user|api|header:[A-Za-z0-9-]+)$")
"""What a limit may count by (also the quota policy's ``key``)."""


class RateLimitConfig(PolicyConfig):
    calls: int | None = Field(None, ge=1, description="Calls allowed per period.")
    period: float | str = Field(
        60,
        description="Seconds, or a rate like '20/90s' / '100/minute' (then calls is implied).",
    )
    key: str = Field("subscription", description="subscription, ip, user, api or header:<name>.")
    name: str | None = Field(None, max_length=40, description="Name shown in RateLimit headers.")
    hide_headers: bool = Field(False, description="Do not send the RateLimit headers.")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not COUNTER_KEY.match(value):
            raise ValueError(
                f"{value!r} is not a counter key: use subscription, ip, user, api or header:<name>"
            )
        return value

    @model_validator(mode="after")
    def _rate(self) -> RateLimitConfig:
        if isinstance(self.period, str):
            calls, seconds = parse_rate(self.period)
            if self.calls is not None and self.calls != calls:
                raise ValueError(
                    f"period {self.period!r} says {calls} calls but calls is {self.calls}"
                )
            self.calls, self.period = calls, seconds
        elif self.period <= 0:
            raise ValueError("period must be a positive number of seconds")
        if self.calls is None:
            raise ValueError("give calls (and period in seconds), or a rate like '20/90s'")
        return self


def subject(key: str, ctx: RequestContext) -> str:
    """Whose counter a request is charged to."""
    grant = ctx.grant
    if key == "subscription" and grant is not None:
        return f"s{grant.subscription_id}"
    if key == "user" and grant is not None:
        return f"u{grant.user_id}"
    if key == "api":
        return f"a{ctx.api_id}"
    if key.startswith("header:"):
        value = ctx.header(key[7:].lower().encode())
        if value is not None:
            return "h" + value.decode("latin-1")[:200]
    return f"i{ctx.client_ip}"  # no key/subscription: fall back to the client address


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """What the RateLimit headers say about a limit."""

    name: str
    limit: int
    window: int
    unit: str = ""  # "" for requests, "content-bytes" for byte quotas

    def policy_item(self) -> str:
        unit = f';qu="{self.unit}"' if self.unit else ""
        return f'"{self.name}";q={self.limit};w={self.window}{unit}'


class RateLimitPolicy:
    kind = "rate-limit"
    phase = Phase.LIMITS
    slot = "limiters"
    merge = Merge.EVERY

    def __init__(self, config: RateLimitConfig, context: BuildContext) -> None:
        assert config.calls is not None
        assert isinstance(config.period, float | int)
        self.calls = config.calls
        self.window = float(config.period)
        self.key = config.key
        self.hide_headers = config.hide_headers
        self.uid = context.uid
        self.spec = LimitSpec(
            config.name or f"{config.calls}-per-{int(self.window)}s", config.calls, int(self.window)
        )

    def limit_specs(self) -> list[LimitSpec]:
        return [self.spec]

    def limit_checks(self, ctx: RequestContext) -> list[LimitCheck]:
        index, elapsed = sliding_position(ctx.now, self.window)
        key = f"tw:rl:{self.uid}:{subject(self.key, ctx)}"
        return [LimitCheck(key, self.calls, self.window, index, elapsed, True)]


register("rate-limit", RateLimitConfig, RateLimitPolicy)
