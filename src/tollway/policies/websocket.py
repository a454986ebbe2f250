"""websocket: the limits of a WebSocket session through the gateway, once it is upgraded.

The upgrade itself is admitted like any call (key, product access, ip-filter, validate-jwt,
rate limits and quotas count the connection); this policy bounds what the session may do after:

- ``idle_timeout``: no message either way for this long closes both sides with ``1001``;
- ``max_message_bytes``: a bigger message, either way, closes both sides with ``1009``;
- ``max_lifetime``: the session is closed with ``1008`` when it has lasted this long;
- ``max_messages_per_second``: the client's messages over this rate (bursts up to the same
  number) close the session with ``1008``.

Without the policy the defaults below apply. The most specific scope wins (one session, one set
of limits). The gateway's WebSocket proxy (``gateway/exchange/websocket.py``) enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from tollway.policies.base import PolicyConfig
from tollway.policies.phases import Merge, Phase
from tollway.policies.registry import BuildContext, register

# What uvicorn reads of one message before the gateway sees it (its ``ws_max_size``, as
# ``tollway serve`` sets it): the per-API limit can only be lower.
MAX_MESSAGE_CEILING = 16 * 1024 * 1024


class WebSocketConfig(PolicyConfig):
    idle_timeout: float = Field(
        300.0, gt=0, le=86400, description="Seconds without a message (either way) before 1001."
    )
    max_message_bytes: int = Field(
        1024 * 1024,
        ge=1,
        le=MAX_MESSAGE_CEILING,
        description="Largest message either way (bytes); a bigger one closes with 1009.",
    )
    max_lifetime: float | None = Field(
        None, gt=0, le=7 * 86400, description="Seconds a session may last (1008 after); none."
    )
    max_messages_per_second: float | None = Field(
        None, gt=0, le=100000, description="Client messages per second (1008 above); none."
    )


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one WebSocket session may do, as the policy (or the defaults) say."""

    idle_timeout: float = 300.0
    max_message_bytes: int = 1024 * 1024
    max_lifetime: float | None = None
    max_messages_per_second: float | None = None

    def message_rate(self) -> MessageRate | None:
        """A fresh per-session rate (None without a rate limit)."""
        rate = self.max_messages_per_second
        return None if rate is None else MessageRate(rate)


DEFAULT_LIMITS = SessionLimits()


class MessageRate:
    """A token bucket for one session's client messages: ``rate`` per second, bursts of up to
    ``max(1, rate)`` messages (made per session, never shared)."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.last: float | None = None

    def allow(self, now: float) -> bool:
        """Take one message's token at monotonic time ``now``; False when there is none."""
        if self.last is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class WebSocketPolicy:
    kind = "websocket"
    phase = Phase.SESSION
    slot = "websocket"
    merge = Merge.MOST_SPECIFIC

    def __init__(self, config: WebSocketConfig, context: BuildContext) -> None:
        self.limits = SessionLimits(
            config.idle_timeout,
            config.max_message_bytes,
            config.max_lifetime,
            config.max_messages_per_second,
        )


register("websocket", WebSocketConfig, WebSocketPolicy)
