"""Calendar and calendar_filtered: meanings, DST days, holidays, and jumps (not scans)."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.schedules import (
    BaseSchedule,
    Calendar,
    calendar_filtered,
    cron,
    crontab,
    every,
    once,
    schedule_from_dict,
)

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
MON = datetime(2024, 6, 3, tzinfo=UTC)  # a Monday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Counting(BaseSchedule):
    """Wraps a schedule and counts the calls to its ``next_after``."""

    type = "test_counting"

    def __init__(self, inner: BaseSchedule) -> None:
        self.inner = inner
        self.calls = 0

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> Any:
        self.calls += 1
        return self.inner.next_after(after, last_run_at)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "inner": self.inner.to_dict()}


def test_defaults_are_business_hours_on_weekdays():
    calendar = Calendar()
    assert calendar.business_hours == ("09:00", "17:00")
    assert calendar.weekdays == (0, 1, 2, 3, 4) and calendar.timezone == "UTC"
    assert calendar.allows(MON.replace(hour=9))
    assert calendar.allows(MON.replace(hour=16, minute=59, second=59))
    assert not calendar.allows(MON.replace(hour=17))  # the end is excluded
    assert not calendar.allows(MON.replace(hour=8, minute=59))
    assert not calendar.allows(MON - timedelta(days=1, hours=-12))  # Sunday noon


def test_next_allowed_jumps_to_the_next_window():
    calendar = Calendar()
    assert calendar.next_allowed(MON.replace(hour=10)) == MON.replace(hour=10)
    assert calendar.next_allowed(MON.replace(hour=3)) == MON.replace(hour=9)
    assert calendar.next_allowed(MON.replace(hour=17)) == utc(2024, 6, 4, 9)
    friday_evening = utc(2024, 6, 7, 18)
    assert calendar.next_allowed(friday_evening) == utc(2024, 6, 10, 9)


def test_all_day_and_every_day():
    calendar = Calendar(business_hours=None, weekdays=None)
    assert calendar.allows(utc(2024, 6, 2, 3)) and calendar.next_allowed(MON) == MON
    weekends = Calendar(business_hours=("00:00", "24:00"), weekdays=(5, 6))
    assert weekends.next_allowed(MON) == utc(2024, 6, 8)
    assert weekends.allows(utc(2024, 6, 9, 23, 59, 59))


def test_timezone_is_used_for_hours_and_days():
    calendar = Calendar(timezone="America/New_York")
    assert not calendar.allows(MON.replace(hour=10))  # 06:00 in New York
    assert calendar.next_allowed(MON) == MON.replace(hour=13)  # 09:00 EDT
    tokyo = Calendar(weekdays=(0,), business_hours=None, timezone="Asia/Tokyo")
    assert tokyo.next_allowed(utc(2024, 6, 2, 12)) == utc(2024, 6, 2, 15)  # Mon 00:00 JST


def test_blackouts():
    start, end = MON.replace(hour=10), MON.replace(hour=14, minute=30)
    calendar = Calendar(blackouts=[(start, end)])
    assert calendar.allows(start - timedelta(microseconds=1))
    assert not calendar.allows(start) and not calendar.allows(end - timedelta(seconds=1))
    assert calendar.allows(end)
    assert calendar.next_allowed(start) == end
    # overlapping blackouts and a blackout ending outside business hours
    calendar = Calendar(blackouts=[(start, end), (end - timedelta(hours=1),
                                                 MON.replace(hour=20))])
    assert calendar.next_allowed(start) == utc(2024, 6, 4, 9)
    assert calendar.blackouts[0] == (start, end)


def test_a_blackout_costs_the_same_however_long():
    start = utc(2024, 6, 3, 10, 2)
    counts = {}
    for length in (timedelta(days=1), timedelta(days=730)):
        calendar = Calendar(business_hours=("09:00", "17:00"), weekdays=None,
                            blackouts=[(start, start + length)])
        inner = Counting(crontab(minute="*/5"))
        fire = calendar_filtered(inner, calendar).next_after(start)
        assert fire == start + length + timedelta(minutes=3)
        counts[length] = inner.calls
    assert counts[timedelta(days=1)] == counts[timedelta(days=730)] == 2


def test_next_allowed_does_not_scan_the_blackout(monkeypatch):
    checked = []
    original = Calendar.day_allowed
    monkeypatch.setattr(Calendar, "day_allowed",
                        lambda self, day: checked.append(day) or original(self, day))
    for days in (1, 1500):
        checked.clear()
        calendar = Calendar(blackouts=[(MON, MON + timedelta(days=days, hours=12))])
        assert calendar.next_allowed(MON) == MON + timedelta(days=days, hours=12)
        assert len(checked) <= 3


def test_forbid_everything_returns_none():
    start = utc(2024, 1, 1)
    calendar = Calendar(business_hours=None, weekdays=None,
                        blackouts=[(start, start + timedelta(days=20 * 366))])
    assert calendar.next_allowed(start) is None
    assert calendar_filtered(every(minutes=5), calendar).next_after(start) is None
    # a schedule that only fires when the calendar is closed: bounded search, then None
    early = calendar_filtered(crontab(0, 8), Calendar())
    assert early.next_after(start) is None


def test_dst_days_new_york():
    calendar = Calendar(business_hours=("00:00", "01:30"), weekdays=None,
                        timezone="America/New_York")
    # 2024-11-03: 01:00-01:59 happens twice; 01:45 EDT is closed, 01:00 EST opens again
    first_pass = datetime(2024, 11, 3, 1, 45, tzinfo=NY)
    assert not calendar.allows(first_pass)
    assert calendar.next_allowed(first_pass) == utc(2024, 11, 3, 6)
    assert calendar.allows(utc(2024, 11, 3, 6, 29)) and not calendar.allows(utc(2024, 11, 3, 6, 30))
    # 2024-03-10: 02:00-02:59 does not exist; opening at 02:30 means 03:00 EDT
    gap = Calendar(business_hours=("02:30", "05:00"), weekdays=None,
                   timezone="America/New_York")
    assert gap.next_allowed(datetime(2024, 3, 10, tzinfo=NY)) == utc(2024, 3, 10, 7)
    assert not gap.allows(utc(2024, 3, 10, 6, 59, 59))


def test_midnight_dst_change():
    # Havana springs forward at midnight: Sunday 2024-03-10 starts at 01:00 CDT (05:00 UTC)
    calendar = Calendar(business_hours=None, weekdays=(6,), timezone="America/Havana")
    assert calendar.next_allowed(utc(2024, 3, 9, 12)) == utc(2024, 3, 10, 5)
    assert not calendar.allows(utc(2024, 3, 10, 4, 59, 59))


def test_holidays_by_country_and_subdivision():
    us = Calendar(holidays="US", timezone="America/New_York")
    july_4 = datetime(2024, 7, 4, 10, tzinfo=NY)
    assert not us.allows(july_4)
    assert us.next_allowed(july_4) == datetime(2024, 7, 5, 9, tzinfo=NY)
    assert us.is_holiday(date(2024, 12, 25)) and not us.is_holiday(date(2024, 12, 24))
    california = Calendar(holidays=("US", "CA"))
    assert california.is_holiday(date(2024, 3, 31))  # Cesar Chavez Day
    assert not us.is_holiday(date(2024, 3, 31))
    assert california.to_dict()["holidays"] == {"country": "US", "subdiv": "CA"}
    assert Calendar(holidays="us").holidays == ("US", None)
    bavaria = Calendar.from_dict({"holidays": {"country": "DE", "subdiv": "BY"},
                                  "business_hours": None, "weekdays": None})
    assert bavaria.is_holiday(date(2024, 1, 6))  # Epiphany, Bavaria only


def test_explicit_holiday_dates():
    calendar = Calendar(holidays=[date(2024, 6, 4), "2024-06-05"])
    assert calendar.holidays == (date(2024, 6, 4), date(2024, 6, 5))
    assert calendar.next_allowed(utc(2024, 6, 3, 18)) == utc(2024, 6, 6, 9)
    assert calendar.to_dict()["holidays"] == {"dates": ["2024-06-04", "2024-06-05"]}


def test_holidays_package_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "holidays", None)
    with pytest.raises(InvalidSchedule, match="pip install") as info:
        Calendar(holidays="US")
    assert info.value.field == "holidays"
    assert Calendar(holidays=[date(2024, 1, 1)]).is_holiday(date(2024, 1, 1))


def test_calendar_json_roundtrip():
    calendar = Calendar(
        business_hours=("08:30", "18:00"), weekdays=[4, 0, 2, 2], holidays=("US", "NY"),
        blackouts=[("2024-12-24T00:00:00+01:00", "2024-12-27T00:00:00+01:00"),
                   (utc(2024, 1, 1), utc(2024, 1, 2))],
        timezone="Europe/Paris")
    data = calendar.to_dict()
    assert data == {
        "business_hours": ["08:30", "18:00"],
        "weekdays": [0, 2, 4],
        "holidays": {"country": "US", "subdiv": "NY"},
        "blackouts": [["2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"],
                      ["2024-12-23T23:00:00+00:00", "2024-12-26T23:00:00+00:00"]],
        "timezone": "Europe/Paris",
    }
    assert Calendar.from_dict(data) == calendar and hash(Calendar.from_dict(data)) == \
        hash(calendar)
    with pytest.raises(AttributeError):
        calendar.weekdays = (0,)  # type: ignore[misc]


def test_calendar_filtered_skips_forbidden_fire_times():
    schedule = calendar_filtered(cron("0 * * * *"), Calendar())
    assert schedule.next_after(utc(2024, 6, 7, 16, 30)) == utc(2024, 6, 10, 9)  # Fri -> Mon
    assert schedule.next_after(MON.replace(hour=9)) == MON.replace(hour=10)
    data = schedule.to_dict()
    assert data["type"] == "calendar_filtered" and schedule_from_dict(data) == schedule


def test_calendar_filtered_interval_restarts_when_the_calendar_opens():
    schedule = calendar_filtered(every(minutes=25), Calendar())
    fire = schedule.next_after(utc(2024, 6, 3, 16, 50), utc(2024, 6, 3, 16, 50))
    assert fire == utc(2024, 6, 4, 9)  # 17:15 is closed: moved to the opening
    assert schedule.next_after(fire, fire) == utc(2024, 6, 4, 9, 25)


def test_calendar_filtered_once_is_moved_to_the_opening():
    schedule = calendar_filtered(once(utc(2024, 6, 8, 12)), Calendar())  # a Saturday
    assert schedule.next_after(MON) == utc(2024, 6, 10, 9)
    assert schedule.next_after(MON, last_run_at=utc(2024, 6, 10, 9)) is None
    late = calendar_filtered(once(utc(2024, 6, 1)), Calendar())
    assert late.initial_run_at(utc(2024, 6, 8, 12)) == utc(2024, 6, 10, 9)
    assert late.initial_run_at(MON.replace(hour=11)) == MON.replace(hour=11)


def test_calendar_filtered_blackout_covering_now():
    now = MON.replace(hour=11)
    calendar = Calendar(blackouts=[(now - timedelta(hours=1), now + timedelta(hours=2))])
    schedule = calendar_filtered(every(seconds=10), calendar)
    assert schedule.next_after(now, now) == now + timedelta(hours=2)
    assert schedule.initial_run_at(now) == now + timedelta(hours=2)
