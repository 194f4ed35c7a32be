"""Bad input to the new schedule kinds raises InvalidSchedule naming the field."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.schedules import (
    Calendar,
    all_of,
    any_of,
    calendar_filtered,
    crontab,
    custom,
    every,
    once,
    register_schedule,
    schedule_from_dict,
)

UTC = timezone.utc
T0 = datetime(2024, 6, 1, tzinfo=UTC)
NAIVE = datetime(2024, 6, 1)

BAD = [
    # (constructor, field, text that must appear in the message)
    (lambda: once(NAIVE), "at", "at '2024-06-01T00:00:00' is a naive datetime"),
    (lambda: once("2024-06-01T00:00:00"), "at", "is a naive datetime"),
    (lambda: once("tomorrow"), "at", "at 'tomorrow' is not an ISO 8601 datetime"),
    (lambda: once(None), "at", "at None is not a datetime"),
    (lambda: once(date(2024, 6, 1)), "at", "is not a datetime"),
    (lambda: once(T0, cleanup="archive"), "cleanup", "cleanup 'archive' is unknown"),
    (lambda: once(T0, cleanup=None), "cleanup", "cleanup None"),
    (lambda: any_of(), "schedules", "any_of needs at least one schedule"),
    (lambda: all_of(), "schedules", "all_of needs at least one schedule"),
    (lambda: all_of([]), "schedules", "all_of needs at least one schedule"),
    (lambda: any_of(every(seconds=1), "*/5"), "schedules", "schedules[1] '*/5'"),
    (lambda: all_of(60), "schedules", "schedules[0] 60 of all_of is not a schedule"),
    (lambda: custom(""), "name", "custom schedule name '' is not a non-empty string"),
    (lambda: custom(None), "name", "custom schedule name None"),
    (lambda: custom("x", when=T0), "params", "custom param 'when'"),
    (lambda: custom("x", values={1, 2}), "params", "is not JSON-serialisable"),
    (lambda: custom("x", ratio=float("nan")), "params", "is not finite"),
    (lambda: custom("x", table={1: "a"}), "params", "key 1 is not a string"),
    (lambda: register_schedule(""), "name", "custom schedule name ''"),
    (lambda: Calendar(business_hours="09:00-17:00"), "business_hours",
     "is not a (start, end) pair"),
    (lambda: Calendar(business_hours=("9am", "17:00")), "business_hours",
     "business_hours start '9am' is not in 'HH:MM' format"),
    (lambda: Calendar(business_hours=("09:00", "17:60")), "business_hours",
     "end '17:60' is not a time of day"),
    (lambda: Calendar(business_hours=("25:00", "26:00")), "business_hours",
     "'25:00' is not a time of day"),
    (lambda: Calendar(business_hours=("24:00", "24:00")), "business_hours",
     "start '24:00' is not a time of day"),
    (lambda: Calendar(business_hours=("17:00", "09:00")), "business_hours",
     "start must be before end"),
    (lambda: Calendar(business_hours=("09:00", "09:00")), "business_hours",
     "start must be before end"),
    (lambda: Calendar(business_hours=(time(9, 0, 30), "17:00")), "business_hours",
     "whole minute"),
    (lambda: Calendar(weekdays=(0, 7)), "weekdays", "weekdays item 7 is not an integer 0-6"),
    (lambda: Calendar(weekdays=(-1,)), "weekdays", "item -1"),
    (lambda: Calendar(weekdays=("mon",)), "weekdays", "item 'mon'"),
    (lambda: Calendar(weekdays=()), "weekdays", "weekdays is empty"),
    (lambda: Calendar(weekdays="01234"), "weekdays", "is not a collection"),
    (lambda: Calendar(weekdays=5), "weekdays", "is not a collection"),
    (lambda: Calendar(holidays="XX"), "holidays", "country 'XX' is unknown"),
    (lambda: Calendar(holidays=("US", "ZZ")), "holidays",
     "country 'US' with subdivision 'ZZ' is unknown"),
    (lambda: Calendar(holidays=["2024-02-30"]), "holidays", "'2024-02-30' is not a date"),
    (lambda: Calendar(holidays=[NAIVE]), "holidays", "is not a date"),
    (lambda: Calendar(holidays=[20240101]), "holidays", "20240101 is not a date"),
    (lambda: Calendar(holidays=42), "holidays", "42 is not a country code"),
    (lambda: Calendar(holidays={"name": "US"}), "holidays", "neither 'country' nor 'dates'"),
    (lambda: Calendar(holidays={"country": ""}), "holidays", "'' is not a country code"),
    (lambda: Calendar(blackouts=[(NAIVE, T0)]), "blackouts", "is a naive datetime"),
    (lambda: Calendar(blackouts=[(T0, T0)]), "blackouts", "start must be before end"),
    (lambda: Calendar(blackouts=[(T0 + timedelta(days=1), T0)]), "blackouts",
     "start must be before end"),
    (lambda: Calendar(blackouts=[(T0,)]), "blackouts", "is not a (start, end) pair"),
    (lambda: Calendar(blackouts=[("soon", "later")]), "blackouts",
     "blackouts 'soon' is not an ISO 8601 datetime"),
    (lambda: Calendar(blackouts=T0), "blackouts", "is not a list of (start, end) pairs"),
    (lambda: Calendar(timezone="Mars/Base"), "timezone", "timezone 'Mars/Base' is unknown"),
    (lambda: Calendar(timezone=3), "timezone", "timezone 3"),
    (lambda: calendar_filtered("*/5", Calendar()), "schedule", "schedule '*/5' is not a schedule"),
    (lambda: calendar_filtered(every(seconds=1), "weekdays"), "calendar",
     "calendar 'weekdays' is not a Calendar"),
    (lambda: calendar_filtered(every(seconds=1), {"weekdays": [9]}), "weekdays", "item 9"),
]


@pytest.mark.parametrize(("build", "field", "text"), BAD)
def test_bad_input_names_the_field(build, field, text):
    with pytest.raises(InvalidSchedule) as info:
        build()
    assert info.value.field == field
    assert text in str(info.value)


BAD_DICTS = [
    ({"type": "once"}, "at"),
    ({"type": "once", "at": "2024-06-01T00:00:00+00:00", "cleanup": "shred"}, "cleanup"),
    ({"type": "any_of"}, "schedules"),
    ({"type": "all_of", "schedules": "crontab"}, "schedules"),
    ({"type": "all_of", "schedules": []}, "schedules"),
    ({"type": "any_of", "schedules": [{"type": "crontab", "minute": "99"}]}, "minute"),
    ({"type": "any_of", "schedules": [{"type": "nope"}]}, "type"),
    ({"type": "custom"}, "name"),
    ({"type": "custom", "name": "x", "params": [1]}, "params"),
    ({"type": "calendar_filtered", "schedule": {"type": "interval", "seconds": 5}},
     "calendar"),
    ({"type": "calendar_filtered", "schedule": {"type": "interval", "seconds": 5},
      "calendar": {"timezone": "Nowhere/City"}}, "timezone"),
    ({"type": "calendar_filtered", "calendar": {}}, "schedule"),
    ({"type": "last_day_of_month", "hour": 24}, "hour"),
]


@pytest.mark.parametrize(("data", "field"), BAD_DICTS)
def test_bad_json_names_the_field(data, field):
    with pytest.raises(InvalidSchedule) as info:
        schedule_from_dict(data)
    assert info.value.field == field


@pytest.mark.parametrize("schedule", [
    once(T0), any_of(crontab()), all_of(crontab()), custom("anything"),
    calendar_filtered(crontab(), Calendar()),
])
def test_naive_after_is_rejected(schedule):
    with pytest.raises(InvalidSchedule) as info:
        schedule.next_after(NAIVE)
    assert info.value.field == "after"


def test_naive_instants_for_calendar_methods():
    for method in (Calendar().allows, Calendar().next_allowed):
        with pytest.raises(InvalidSchedule) as info:
            method(NAIVE)
        assert info.value.field == "dt"
    with pytest.raises(InvalidSchedule) as info:
        Calendar.from_dict(["09:00"])  # type: ignore[arg-type]
    assert info.value.field == "calendar"


@pytest.mark.parametrize("data", [
    {"weekdays_only": True},                 # a ScheduleBuilder method, not a key
    {"weekdays": [0, 1, 2, 3, 4], "tz": "Europe/Paris"},
])
def test_a_calendar_key_that_is_not_one_is_refused_not_ignored(data):
    with pytest.raises(InvalidSchedule, match=r"calendar key '(weekdays_only|tz)' is not one "
                                              r"of business_hours, weekdays, holidays") as info:
        Calendar.from_dict(data)
    assert info.value.field == "calendar"
