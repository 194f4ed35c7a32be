"""Properties of once, any_of, all_of, custom, calendar_filtered and last_day_of_month.

For every kind: ``next_after(t)`` is strictly after ``t``, the JSON form is a fixed point of
``schedule_from_dict(to_dict())``, composites and calendar-filtered schedules never return a
time a calendar forbids, and ``all_of`` only returns instants at which every member fires.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from kind_strategies import (
    calendars,
    customs,
    instants,
    intervals,
    last_days,
    onces,
    schedules,
    simple_crontabs,
)

from celery_beatx.schedules import (
    BaseSchedule,
    Calendar,
    all_of,
    any_of,
    calendar_filtered,
    custom,
    every,
    once,
    schedule_from_dict,
)

TICK = timedelta(microseconds=1)
SLOW = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
last_runs = st.one_of(st.none(), instants)


def _roundtrip(schedule: BaseSchedule) -> BaseSchedule:
    data = schedule.to_dict()
    again = schedule_from_dict(json.loads(json.dumps(data)))
    assert again == schedule and hash(again) == hash(schedule)
    assert again.to_dict() == data
    assert type(again) is type(schedule)
    return again


def _movable(schedule: BaseSchedule) -> bool:
    return isinstance(schedule, (every, once))


def must_allow(schedule: BaseSchedule, when: datetime) -> bool:
    """Whether ``when`` is consistent with every calendar ``schedule`` is subject to."""
    if isinstance(schedule, calendar_filtered):
        return schedule.calendar.allows(when) and (
            _movable(schedule.schedule) or must_allow(schedule.schedule, when))
    if isinstance(schedule, all_of):
        return all(must_allow(m, when) for m in schedule.schedules)
    if isinstance(schedule, any_of):
        return any(must_allow(m, when) for m in schedule.schedules)
    return True


def check(schedule: BaseSchedule, after: datetime, last_run_at: datetime | None) -> None:
    again = _roundtrip(schedule)
    fire = schedule.next_after(after, last_run_at)
    assert again.next_after(after, last_run_at) == fire
    if fire is None:
        return
    assert fire > after
    assert fire.utcoffset() == timedelta(0)
    assert must_allow(schedule, fire)
    if isinstance(schedule, all_of):
        anchor = last_run_at if last_run_at is not None else after
        for member in schedule.schedules:
            assert member.next_after(fire - TICK, anchor) == fire
    if isinstance(schedule, any_of):
        assert fire in [m.next_after(after, last_run_at) for m in schedule.schedules]
    following = schedule.next_after(fire, last_run_at)
    assert following is None or following > fire


@given(onces, instants, last_runs)
def test_once(schedule, after, last_run_at):
    check(schedule, after, last_run_at)


@given(customs, instants, last_runs)
def test_custom(schedule, after, last_run_at):
    check(schedule, after, last_run_at)


@given(last_days, instants)
def test_last_day_of_month(schedule, after):
    check(schedule, after, None)
    fire = schedule.next_after(after)
    local = fire.astimezone(schedule._zone)  # white-box: the zone object
    assert (local + timedelta(days=1)).day == 1
    assert (local.hour, local.minute) == (schedule.hour, schedule.minute) or \
        local.utcoffset() != (local - timedelta(hours=3)).utcoffset()  # moved by a DST gap


@SLOW
@given(st.lists(st.one_of(simple_crontabs, intervals, customs), min_size=1, max_size=3),
       instants, last_runs)
def test_any_of(members, after, last_run_at):
    check(any_of(*members), after, last_run_at)


@SLOW
@given(st.lists(st.one_of(simple_crontabs, intervals, customs), min_size=1, max_size=3),
       instants, last_runs)
def test_all_of(members, after, last_run_at):
    check(all_of(*members), after, last_run_at)


@SLOW
@given(st.one_of(simple_crontabs, intervals, onces, customs, last_days), calendars, instants,
       last_runs)
def test_calendar_filtered(inner, calendar, after, last_run_at):
    schedule = calendar_filtered(inner, calendar)
    check(schedule, after, last_run_at)
    fire = schedule.next_after(after, last_run_at)
    if fire is None or _movable(inner) or (isinstance(inner, custom) and last_run_at is None):
        return  # kinds without a fixed phase (relative to ``after``) have no fixed fire set
    # Minimal: every fire time of the inner schedule before ``fire`` is forbidden.
    when = inner.next_after(after, last_run_at)
    for _ in range(500):
        if when is None or when >= fire:
            break
        assert not calendar.allows(when)
        when = inner.next_after(when, last_run_at)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schedules, instants, last_runs)
def test_nested(schedule, after, last_run_at):
    check(schedule, after, last_run_at)


@SLOW
@given(calendars, instants)
def test_calendar_next_allowed_is_the_first_allowed_instant(calendar, start):
    assert Calendar.from_dict(json.loads(json.dumps(calendar.to_dict()))) == calendar
    found = calendar.next_allowed(start)
    if found is None:
        return
    assert found >= start and calendar.allows(found)
    assume(found > start)
    # The first allowed instant is ``start``, the end of a blackout or a whole UTC minute
    # (business hours, midnights and DST changes all fall on whole minutes).
    ends = [end for _, end in calendar.blackouts if start <= end < found]
    assert not any(calendar.allows(end) for end in ends)
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if found - start <= timedelta(days=3):
        while minute < found:
            assert not calendar.allows(minute), minute
            minute += timedelta(minutes=1)
    else:  # too far to scan every minute: scan every minute of the last day, sample the rest
        step = (found - minute) / 500
        for index in range(500):
            assert not calendar.allows(minute + step * index)
        minute = max(minute, (found - timedelta(days=1)).replace(second=0, microsecond=0))
        while minute < found:
            assert not calendar.allows(minute), minute
            minute += timedelta(minutes=1)
