"""Rate and calendar arithmetic, with explicit instants instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tollway.policies.windows import calendar_window, parse_rate


def at(text: str, zone: str = "UTC") -> float:
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/90s", (20, 90.0)),
        ("100/minute", (100, 60.0)),
        ("5/2h", (5, 7200.0)),
        ("1/day", (1, 86400.0)),
    ],
)
def test_rates_parse(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["20", "20/90x", "0/minute", "/s", "ten/minute"])
def test_bad_rates_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match=r"calls/period|positive"):
        parse_rate(text)


def test_month_rolls_over_from_jan_31_to_feb_1() -> None:
    jan = calendar_window(at("2027-01-31T23:59:59"), "month")
    feb = calendar_window(at("2027-02-01T00:00:00"), "month")
    assert jan[0] != feb[0]
    assert jan[2] == 31 * 86400 and jan[2] - jan[1] == 1  # one second left in January
    assert feb[1] == 0 and feb[2] == 28 * 86400


def test_leap_year_february_has_29_days() -> None:
    _, _, length = calendar_window(at("2028-02-15T12:00:00"), "month")
    assert length == 29 * 86400
    _, _, year = calendar_window(at("2028-06-01T00:00:00"), "year")
    assert year == 366 * 86400


def test_a_month_with_a_dst_change_is_an_hour_shorter_in_local_time() -> None:
    zone = "Europe/Berlin"  # clocks go forward on 2027-03-28
    index, elapsed, length = calendar_window(at("2027-03-31T23:30:00", zone), "month", zone)
    assert length == 31 * 86400 - 3600
    assert length - elapsed == 1800  # resets at local midnight on April 1st
    assert index == int(at("2027-03-01T00:00:00", zone))


def test_day_and_week_follow_the_zone() -> None:
    zone = "America/New_York"
    _, elapsed, _ = calendar_window(at("2027-07-14T01:00:00", zone), "day", zone)
    assert elapsed == 3600
    _, elapsed, length = calendar_window(at("2027-07-14T00:00:00", zone), "week", zone)
    assert length == 7 * 86400 and elapsed == 2 * 86400  # ISO week began Monday the 12th
