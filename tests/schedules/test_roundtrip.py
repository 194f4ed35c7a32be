"""Properties of every schedule kind: strictly-later fire times and a lossless JSON form."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from celery_beatx.schedules import (
    BaseSchedule,
    cron,
    crontab,
    every,
    schedule_from_dict,
    solar,
)
from celery_beatx.schedules.base import MIN_INTERVAL
from celery_beatx.schedules.solar import EVENTS

UTC = timezone.utc
ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Chatham", "Europe/Berlin"]

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
    timezones=st.sampled_from([UTC, *map(ZoneInfo, ZONES[1:])]),
)


def _numeric_field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    ordered = st.tuples(value, value).map(sorted)
    return st.one_of(
        st.just("*"),
        st.integers(1, high - low + 1).map(lambda n: f"*/{n}"),
        value.map(str),
        ordered.map(lambda pair: f"{pair[0]}-{pair[1]}"),
        st.tuples(ordered, st.integers(1, 10)).map(
            lambda item: f"{item[0][0]}-{item[0][1]}/{item[1]}"),
        st.lists(value, min_size=1, max_size=4).map(lambda vs: ",".join(map(str, vs))),
    )


minutes = _numeric_field(0, 59)
hours = _numeric_field(0, 23)
days_of_month = _numeric_field(1, 28)
months = st.one_of(_numeric_field(1, 12), st.sampled_from(["jan-mar", "feb", "DEC", "*/3"]))
weekdays = st.one_of(_numeric_field(0, 6), st.sampled_from(["mon-fri", "sat,sun", "SUN"]))
zones = st.sampled_from([None, *ZONES])

crontabs = st.builds(crontab, minutes, hours, weekdays, days_of_month, months, zones)
cron_weekdays = st.one_of(weekdays, _numeric_field(0, 7))
crons = st.builds(
    lambda m, h, dom, mon, dow, tz: cron(f"{m} {h} {dom} {mon} {dow}", timezone=tz),
    minutes, hours, days_of_month, months, cron_weekdays, zones,
)
intervals = st.one_of(
    st.integers(1, 10**7).map(lambda s: every(seconds=s)),
    st.floats(MIN_INTERVAL, 1e6, allow_nan=False).map(lambda s: every(seconds=s)),
    st.builds(every, minutes=st.integers(1, 600), hours=st.integers(0, 48)),
)
solars = st.builds(
    solar, st.sampled_from(sorted(EVENTS)), st.floats(-60, 60), st.floats(-180, 180),
    st.floats(0, 3000),
)


def _check(schedule: BaseSchedule, after: datetime) -> None:
    data = schedule.to_dict()
    again = schedule_from_dict(json.loads(json.dumps(data)))
    assert again == schedule and hash(again) == hash(schedule)
    assert again.to_dict() == data
    assert type(again) is type(schedule)
    fire = schedule.next_after(after)
    assert again.next_after(after) == fire
    if fire is not None:
        assert fire > after
        assert fire.utcoffset() is not None and fire.utcoffset().total_seconds() == 0
        assert schedule.next_after(fire) is None or schedule.next_after(fire) > fire


@given(crontabs, instants)
def test_crontab(schedule, after):
    _check(schedule, after)


@given(crons, instants)
def test_cron(schedule, after):
    _check(schedule, after)


@given(intervals, instants)
def test_every(schedule, after):
    _check(schedule, after)


@settings(max_examples=40, deadline=None)
@given(solars, instants)
def test_solar(schedule, after):
    _check(schedule, after)


@given(crontabs, instants)
def test_crontab_fire_times_match_the_fields_on_the_wall_clock(schedule, after):
    fire = schedule.next_after(after)
    assert fire is not None  # only impossible dates never fire, and those are rejected
    zone = ZoneInfo(schedule.timezone)
    if (fire - timedelta(hours=3)).astimezone(zone).utcoffset() != \
            fire.astimezone(zone).utcoffset():
        return  # just after a DST change: a skipped wall time may have been moved
    wall = fire.astimezone(zone)
    matcher = schedule._matcher  # white-box: the expanded fields
    assert (wall.second, wall.microsecond) == (0, 0)
    assert wall.minute in matcher.minutes and wall.hour in matcher.hours
    assert wall.day in matcher.days and wall.month in matcher.months
    assert (wall.weekday() + 1) % 7 in matcher.weekdays


def test_is_due_is_celery_compatible():
    schedule = crontab(minute="*/10")
    now = datetime(2024, 6, 1, 12, 5, tzinfo=UTC)
    assert schedule.is_due(datetime(2024, 6, 1, 11, 55, tzinfo=UTC), now) == (True, 300.0)
    assert schedule.is_due(datetime(2024, 6, 1, 12, 0, tzinfo=UTC), now) == (False, 300.0)
    assert schedule.is_due(None, now) == (False, 300.0)
