"""quota: at most ``calls`` and/or ``bytes`` (request + response bodies) per calendar period.

Periods: ``day``, ``week`` (ISO, from Monday), ``month``, ``year``, aligned to the period's start
in UTC or in ``timezone``, or a number of seconds. Counted per subscription by default (same
``key`` choices as rate-limit). Produces: 429 (or ``status``, e.g. 403 as Azure APIM does)
``/-/problems/quota-exceeded`` naming the quota, with ``Retry-After`` until the period ends.
Bytes are known only after the response, so a call that starts under the byte quota completes.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from tollway.policies.base import PolicyConfig, RequestContext
from tollway.policies.phases import Merge, Phase
from tollway.policies.ratelimit import COUNTER_KEY, LimitSpec, subject
from tollway.policies.registry import BuildContext, register
from tollway.policies.windows import CALENDAR, CalendarPeriods
from tollway.stores.base import LimitCheck

SECONDS = {"day": 86400, "week": 604800, "month": 2678400, "year": 31622400}


class QuotaConfig(PolicyConfig):
    calls: int | None = Field(None, ge=1, description="Calls allowed per period.")
    bytes: int | None = Field(None, ge=1, description="Request + response body bytes per period.")
    period: str | float = Field("month", description="day, week, month, year, or seconds.")
    timezone: str = Field("UTC", description="IANA zone the calendar periods follow.")
    key: str = Field("subscription", description="subscription, ip, user, api or header:<name>.")
    name: str | None = Field(None, max_length=40, description="Name shown in headers and errors.")
    status: int = Field(429, description="Status when exceeded: 429 (default) or 403.")
    hide_headers: bool = Field(False, description="Do not send the RateLimit headers.")

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | float) -> str | float:
        if isinstance(value, str) and value not in CALENDAR:
            raise ValueError(f"period {value!r}: use day, week, month, year or seconds")
        if not isinstance(value, str) and value <= 0:
            raise ValueError("period must be positive")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Berlin)") from None
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not COUNTER_KEY.match(value):
            raise ValueError(f"{value!r}: use subscription, ip, user, api or header:<name>")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: int) -> int:
        if value not in (403, 429):
            raise ValueError("status must be 429 or 403")
        return value

    @model_validator(mode="after")
    def _something(self) -> QuotaConfig:
        if self.calls is None and self.bytes is None:
            raise ValueError("a quota needs calls, bytes, or both")
        return self


class QuotaPolicy:
    kind = "quota"
    phase = Phase.LIMITS
    slot = "limiters"
    merge = Merge.EVERY

    def __init__(self, config: QuotaConfig, context: BuildContext) -> None:
        self.config = config
        self.uid = context.uid
        self.hide_headers = config.hide_headers
        self.name = config.name or f"quota-{config.period}"
        self.status = config.status
        window = SECONDS[config.period] if isinstance(config.period, str) else int(config.period)
        self.periods = CalendarPeriods(config.period, config.timezone)
        self.specs = {
            "calls": LimitSpec(self.name, config.calls or 0, window),
            "bytes": LimitSpec(self.name + "-bytes", config.bytes or 0, window, "content-bytes"),
        }

    def _key(self, ctx: RequestContext, what: str) -> str:
        return f"tw:q:{self.uid}:{what}:{subject(self.config.key, ctx)}"

    def limit_specs(self) -> list[LimitSpec]:
        """What the RateLimit headers say, in the order of :meth:`limit_checks`."""
        return [self.specs[what] for what in ("calls", "bytes") if getattr(self.config, what)]

    def limit_checks(self, ctx: RequestContext) -> list[LimitCheck]:
        index, elapsed, length = self.periods.at(ctx.now)
        found = []
        if self.config.calls:
            key = self._key(ctx, "c")
            found.append(LimitCheck(key, self.config.calls, length, index, elapsed, False))
        if self.config.bytes:
            # cost 0: refused only once the bytes already used exceed the quota
            key = self._key(ctx, "b")
            found.append(LimitCheck(key, self.config.bytes, length, index, elapsed, False, 0))
        return found

    def byte_checks(self, ctx: RequestContext) -> list[LimitCheck]:
        """The byte counter to add a finished call's bytes to (none without ``bytes``)."""
        if not self.config.bytes:
            return []
        index, elapsed, length = self.periods.at(ctx.now)
        key = self._key(ctx, "b")
        return [LimitCheck(key, self.config.bytes, length, index, elapsed, False, 0)]


register("quota", QuotaConfig, QuotaPolicy)
