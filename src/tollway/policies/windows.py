"""Time windows for rate limits (sliding, N seconds) and quotas (calendar periods).

Quota periods are calendar periods in a time zone (UTC by default): ``month`` resets at local
midnight on the 1st, so "10,000 calls per month" resets on the 1st, not every 30 days; February
and DST changes are simply shorter or longer periods. A number of seconds is a fixed window
aligned to the Unix epoch.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
CALENDAR = ("day", "week", "month", "year")


def parse_rate(text: str) -> tuple[int, float]:
    """``"20/90s"`` -> (20, 90.0); ``"100/minute"`` -> (100, 60.0)."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in UNITS:
        raise ValueError(
            f"{text!r} is not a rate: write calls/period, e.g. '20/90s', '100/minute', '5/2h'"
        )
    calls, count, unit = int(match.group(1)), match.group(2), match.group(3)
    seconds = (int(count) if count else 1) * UNITS[unit]
    if calls < 1 or seconds < 1:
        raise ValueError(f"{text!r}: calls and period must be positive")
    return calls, float(seconds)


def sliding_position(now: float, window: float) -> tuple[int, float]:
    """(number of the current fixed window, seconds elapsed in it)."""
    index = int(now // window)
    return index, now - index * window


def calendar_window(now: float, period: str | float, zone: str = "UTC") -> tuple[int, float, float]:
    """(period id, seconds elapsed in it, its length) for ``now`` (epoch seconds)."""
    if not isinstance(period, str):
        index, elapsed = sliding_position(now, float(period))
        return index, elapsed, float(period)
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    local = datetime.fromtimestamp(now, tz)
    start = _period_start(local, period)
    end = _next_start(start, period)
    start_ts, end_ts = start.timestamp(), end.timestamp()
    return int(start_ts), now - start_ts, end_ts - start_ts


def _period_start(local: datetime, period: str) -> datetime:
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        day = midnight
    elif period == "week":  # ISO weeks start on Monday
        day = midnight - timedelta(days=local.weekday())
    elif period == "month":
        day = midnight.replace(day=1)
    elif period == "year":
        day = midnight.replace(month=1, day=1)
    else:
        raise ValueError(f"unknown period {period!r}: use day, week, month, year or seconds")
    return _at_local_midnight(day)


def _next_start(start: datetime, period: str) -> datetime:
    if period == "day":
        following = start.replace(tzinfo=None) + timedelta(days=1)
    elif period == "week":
        following = start.replace(tzinfo=None) + timedelta(days=7)
    elif period == "month":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        following = start.replace(tzinfo=None, year=year, month=month, day=1)
    else:
        following = start.replace(tzinfo=None, year=start.year + 1, month=1, day=1)
    return _at_local_midnight(following.replace(tzinfo=start.tzinfo))


def _at_local_midnight(value: datetime) -> datetime:
    """Wall-clock midnight re-resolved in its zone (the UTC offset differs across DST)."""
    naive = value.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    return naive.replace(tzinfo=value.tzinfo)


class CalendarPeriods:
    """``calendar_window`` for one period and zone, remembering the current period: a request
    inside it costs two comparisons instead of time-zone arithmetic."""

    __slots__ = ("_current", "period", "zone")

    def __init__(self, period: str | float, zone: str = "UTC") -> None:
        self.period = period
        self.zone = zone
        self._current = (0.0, 0.0, 0)  # start, end, index

    def at(self, now: float) -> tuple[int, float, float]:
        start, end, index = self._current
        if start <= now < end:
            return index, now - start, end - start
        index, elapsed, length = calendar_window(now, self.period, self.zone)
        self._current = (now - elapsed, now - elapsed + length, index)
        return index, elapsed, length
