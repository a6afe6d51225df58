"""Cron schedules: next and latest due times in a zone (five fields, seconds, aliases,
daylight-saving changes), and clear refusals of bad expressions and zones."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tether.errors import InvalidParams
from tether.schedule import Schedule, check_cron, check_zone, local_time

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *parts: int, fold: int = 0) -> float:
    return datetime(*parts, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def local(when: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(when, zone).strftime("%Y-%m-%d %H:%M:%S %z")


def test_weekday_mornings_in_a_zone() -> None:
    s = Schedule("0 9 * * 1-5", "Asia/Shanghai")
    friday_noon = at(SHANGHAI, 2026, 1, 2, 12, 0)
    assert local(s.next_after(friday_noon), SHANGHAI) == "2026-01-05 09:00:00 +0800"  # Monday
    assert local(s.latest_at_or_before(friday_noon), SHANGHAI) == "2026-01-02 09:00:00 +0800"
    # 09:00 Shanghai is 01:00 UTC
    assert (
        s.next_after(friday_noon) == datetime(2026, 1, 5, 1, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    )


def test_next_is_strictly_after_and_latest_includes_the_instant() -> None:
    s = Schedule("30 * * * *", "UTC")
    due = datetime(2026, 3, 1, 10, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    assert s.next_after(due) == due + 3600
    assert s.latest_at_or_before(due) == due
    assert s.latest_at_or_before(due - 1) == due - 3600


def test_a_sixth_field_is_seconds() -> None:
    s = Schedule("* * * * * */2", "UTC")
    start = 1_800_000_001.5
    first = s.next_after(start)
    assert first == 1_800_000_002.0
    assert s.next_after(first) == first + 2
    assert s.latest_at_or_before(first + 1.9) == first
    assert Schedule("0 0 * * * 30", "UTC").next_after(0.0) == 30.0


def test_aliases() -> None:
    s = Schedule("@daily", "Asia/Shanghai")
    assert local(s.next_after(at(SHANGHAI, 2026, 5, 1, 8, 0)), SHANGHAI) == (
        "2026-05-02 00:00:00 +0800"
    )
    assert check_cron("@HOURLY") == "@hourly"


def test_a_time_that_does_not_exist_runs_at_the_first_time_after_it() -> None:
    s = Schedule("30 2 * * *", "America/New_York")  # 02:30 does not exist on 2026-03-08
    first = s.next_after(at(NEW_YORK, 2026, 3, 8, 0, 0))
    assert local(first, NEW_YORK) == "2026-03-08 03:00:00 -0400"
    assert local(s.next_after(first), NEW_YORK) == "2026-03-09 02:30:00 -0400"


def test_a_time_that_happens_twice_runs_once() -> None:
    s = Schedule("30 1 * * *", "America/New_York")  # 01:30 happens twice on 2026-11-01
    first = s.next_after(at(NEW_YORK, 2026, 11, 1, 0, 0))
    assert local(first, NEW_YORK) == "2026-11-01 01:30:00 -0400"
    second = s.next_after(first)
    assert local(second, NEW_YORK) == "2026-11-02 01:30:00 -0500"
    assert s.latest_at_or_before(second - 1) == first


def test_every_hour_keeps_real_time_through_the_repeated_hour() -> None:
    s = Schedule("*/30 * * * *", "America/New_York")
    t = at(NEW_YORK, 2026, 11, 1, 1, 0)
    seen = []
    for _ in range(4):
        t = s.next_after(t)
        seen.append(local(t, NEW_YORK))
    assert seen == [
        "2026-11-01 01:30:00 -0400",
        "2026-11-01 01:00:00 -0500",
        "2026-11-01 01:30:00 -0500",
        "2026-11-01 02:00:00 -0500",
    ]


@pytest.mark.parametrize(
    ("expr", "said"),
    [
        ("", "1-200 characters"),
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "invalid cron expression"),
        ("0 9 * * mon-xyz", "invalid cron expression"),
        ("@sometimes", "unknown cron alias"),
        ("x" * 201, "1-200 characters"),
    ],
)
def test_bad_expressions_are_refused_clearly(expr: str, said: str) -> None:
    with pytest.raises(InvalidParams, match=said) as caught:
        check_cron(expr)
    assert caught.value.code == "invalid_params"
    assert caught.value.data == {"field": "cron"}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "x" * 70])
def test_bad_zones_are_refused_clearly(zone: str) -> None:
    with pytest.raises(InvalidParams, match="unknown time zone") as caught:
        check_zone(zone)
    assert caught.value.data == {"field": "tz"}


def test_local_time_names_the_zone() -> None:
    assert local_time(at(SHANGHAI, 2026, 1, 5, 9, 0), "Asia/Shanghai") == "2026-01-05 09:00:00 CST"
    assert local_time(0.0, "Nowhere/Else") == "1970-01-01 00:00:00 UTC"
