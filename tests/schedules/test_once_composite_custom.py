"""once, any_of, all_of and custom: meanings on examples."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.schedules import (
    Schedule,
    all_of,
    any_of,
    calendar_filtered,
    crontab,
    custom,
    every,
    is_registered,
    once,
    register_schedule,
    schedule_from_dict,
    unregister_schedule,
)
from celery_beatx.schedules.base import BaseSchedule

UTC = timezone.utc
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- once ---------------------------------------------------------------------------------


def test_once_fires_at_its_time_then_never():
    schedule = once(at(10))
    assert schedule.next_after(T0) == at(10)
    assert schedule.next_after(at(10)) is None
    assert schedule.next_after(at(11)) is None
    assert schedule.next_after(at(11), last_run_at=at(10)) is None
    assert schedule.next_after(T0, last_run_at=at(10)) is None  # ran (even if clock jumped)
    # a last run older than ``at`` (left by an earlier schedule of the task) is ignored
    assert schedule.next_after(T0, last_run_at=at(-60)) == at(10)


def test_once_in_the_past_at_creation_runs_at_the_next_tick():
    schedule = once(at(-30))
    assert schedule.initial_run_at(T0) == T0
    assert schedule.is_due(None, T0) == (True, float("inf"))
    assert schedule.next_after(T0, last_run_at=T0) is None
    assert schedule.is_due(T0, at(1)) == (False, float("inf"))


def test_once_in_the_future():
    schedule = once(at(10))
    assert schedule.initial_run_at(T0) == at(10)
    assert schedule.is_due(None, T0) == (False, 600.0)
    assert schedule.is_due(None, at(10)) == (True, float("inf"))
    assert schedule.is_due(at(10), at(11)) == (False, float("inf"))


def test_once_fields_and_json():
    paris = timezone(timedelta(hours=2))
    schedule = Schedule.once(datetime(2024, 6, 1, 14, 0, tzinfo=paris))
    assert schedule.at == T0 and schedule.cleanup == "disable"
    assert schedule.to_dict() == {"type": "once", "at": "2024-06-01T12:00:00+00:00",
                                  "cleanup": "disable"}
    assert once("2024-06-01T14:00:00+02:00", cleanup="delete").to_dict()["cleanup"] == "delete"
    assert schedule_from_dict(schedule.to_dict()) == schedule
    with pytest.raises(AttributeError):
        schedule.at = T0  # type: ignore[misc]


def test_default_initial_run_at_is_next_after():
    assert every(minutes=5).initial_run_at(T0) == at(5)
    assert crontab(minute="*/15").initial_run_at(T0 + timedelta(seconds=1)) == at(15)


# -- any_of / all_of ------------------------------------------------------------------------


def test_any_of_is_the_earliest_member():
    schedule = any_of(crontab(minute=30), crontab(minute=45))
    assert schedule.next_after(T0) == at(30)
    assert schedule.next_after(at(30)) == at(45)
    assert schedule.next_after(at(45)) == at(90)
    # last_run_at passes through to the members (intervals anchored on the last run)
    assert any_of(every(minutes=2), every(minutes=3)).next_after(T0, at(-1)) == at(1)


def test_any_of_once_and_initial_run():
    schedule = any_of(once(at(-5)), crontab(minute=30))
    assert schedule.initial_run_at(T0) == T0
    assert schedule.next_after(T0, last_run_at=T0) == at(30)
    assert any_of(once(at(5))).next_after(at(5)) is None


def test_all_of_is_the_first_common_instant():
    assert all_of(every(seconds=60), every(seconds=90)).next_after(T0) == at(3)
    assert all_of(every(seconds=60), every(seconds=90)).next_after(at(3), at(3)) == at(6)
    # every 10 minutes and every 15 minutes of the clock: the half hours
    schedule = all_of(crontab(minute="*/10"), crontab(minute="*/15"))
    assert schedule.next_after(T0) == at(30)
    assert schedule.next_after(at(30)) == at(60)
    # Friday the 13th at midnight, from two independent crontabs
    friday_13 = all_of(crontab(0, 0, day_of_week="fri"), crontab(0, 0, day_of_month=13))
    assert friday_13.next_after(T0) == datetime(2024, 9, 13, tzinfo=UTC)
    assert friday_13.next_after(datetime(2024, 9, 13, tzinfo=UTC)) == \
        datetime(2024, 12, 13, tzinfo=UTC)


def test_all_of_never_loops_forever():
    # members that never coincide (Jan 1 and Feb 1): the 5-year horizon stops the search
    assert all_of(crontab(0, 0, day_of_month=1, month_of_year=1),
                  crontab(0, 0, day_of_month=1, month_of_year=2)).next_after(T0) is None
    # members that step each other forward for ever: the iteration cap stops the search
    offset = T0 + timedelta(seconds=0.5)
    assert all_of(every(seconds=7), crontab()).next_after(T0, offset) is None
    # a member that never fires again
    assert all_of(once(at(5)), crontab()).next_after(at(5)) is None
    assert all_of(once(at(5)), crontab()).next_after(T0) == at(5)


def test_nested_composites():
    inner = all_of(crontab(minute="*/10"), crontab(minute="*/15"))
    schedule = any_of(inner, crontab(minute=45))
    assert schedule.next_after(T0) == at(30)
    assert schedule.next_after(at(30)) == at(45)
    assert schedule.next_after(at(45)) == at(60)
    nested = all_of(schedule, crontab(minute="*/20"))
    assert nested.next_after(T0) == at(60)
    data = nested.to_dict()
    assert data["schedules"][0]["schedules"][0]["type"] == "all_of"
    assert schedule_from_dict(data) == nested


def test_composites_accept_a_list():
    assert any_of([every(seconds=1), every(seconds=2)]) == any_of(every(seconds=1),
                                                                    every(seconds=2))
    assert all_of((every(seconds=1),)).schedules == (every(seconds=1),)


# -- custom -----------------------------------------------------------------------------


@register_schedule("test_next_hour_plus")
def _next_hour_plus(last_run_at, now, minutes=0):
    base = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return base + timedelta(minutes=minutes)


@register_schedule("test_raises")
def _raises(last_run_at, now):
    raise RuntimeError("boom")


@register_schedule("test_naive")
def _naive(last_run_at, now):
    return now.replace(tzinfo=None) + timedelta(hours=1)


@register_schedule("test_not_after")
def _not_after(last_run_at, now):
    return now


@register_schedule("test_never")
def _never(last_run_at, now):
    return None


@register_schedule("test_echo")
def _echo(last_run_at, now, seen):
    seen.append("mutated")  # must not leak into the stored parameters
    return now + timedelta(seconds=len(seen))


def test_custom_calls_the_registered_function():
    schedule = custom("test_next_hour_plus", minutes=5)
    assert schedule.next_after(at(7)) == at(65)
    assert schedule.params == {"minutes": 5} and schedule.registered
    assert schedule.to_dict() == {"type": "custom", "name": "test_next_hour_plus",
                                  "params": {"minutes": 5}}
    assert schedule_from_dict(schedule.to_dict()) == schedule
    assert custom("test_never").next_after(T0) is None


def test_custom_receives_last_run_and_now():
    calls = []

    @register_schedule("test_record")
    def record(last_run_at, now, **params):
        calls.append((last_run_at, now, params))
        return now + timedelta(minutes=1)

    custom("test_record", a=[1, 2]).next_after(T0, at(-5))
    assert calls == [(at(-5), T0, {"a": [1, 2]})]


def test_custom_params_are_json_and_copied():
    schedule = custom("test_echo", seen=(1, 2))
    assert schedule.params == {"seen": [1, 2]}  # stored in JSON form: tuples become lists
    assert schedule.next_after(T0) == T0 + timedelta(seconds=3)
    assert schedule.next_after(T0) == T0 + timedelta(seconds=3)  # no mutation leaked
    assert schedule.params == {"seen": [1, 2]}


def test_custom_need_not_be_registered_to_be_built():
    schedule = custom("test_not_yet_registered", x=1)
    assert not is_registered("test_not_yet_registered") and not schedule.registered
    assert schedule_from_dict(schedule.to_dict()) == schedule
    with pytest.raises(InvalidSchedule, match="'test_not_yet_registered' is not registered") \
            as info:
        schedule.next_after(T0)
    assert info.value.field == "name"
    register_schedule("test_not_yet_registered")(lambda last, now, x: now + timedelta(hours=x))
    try:
        assert schedule.next_after(T0) == at(60)
    finally:
        unregister_schedule("test_not_yet_registered")
    assert not is_registered("test_not_yet_registered")


@pytest.mark.parametrize(("name", "message"), [
    ("test_raises", "'test_raises' raised RuntimeError: boom"),
    ("test_naive", "not an aware datetime"),
    ("test_not_after", "not after"),
])
def test_custom_misbehaving_functions(name, message):
    with pytest.raises(InvalidSchedule, match=message) as info:
        custom(name).next_after(T0)
    assert info.value.field == "name"


def test_custom_exception_is_chained():
    with pytest.raises(InvalidSchedule) as info:
        custom("test_raises").next_after(T0)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_composites_with_custom_and_calendar():
    from celery_beatx.schedules import Calendar

    schedule = any_of(custom("test_next_hour_plus", minutes=30),
                      calendar_filtered(crontab(minute=0), Calendar()))
    data = schedule.to_dict()
    assert schedule_from_dict(data) == schedule
    assert isinstance(schedule, BaseSchedule)
    assert schedule.next_after(at(7)) == at(90)  # Saturday: only the custom fires
    assert schedule.next_after(datetime(2024, 6, 3, 12, 7, tzinfo=UTC)) == \
        datetime(2024, 6, 3, 13, 0, tzinfo=UTC)  # Monday: the crontab fires first


def test_anchored_intervals_fire_on_their_own_grids_inside_any_of():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    both = any_of(every(seconds=2, anchor=t0), every(seconds=3, anchor=t0))
    times, t = [], t0
    for _ in range(6):
        t = both.next_after(t, t)
        times.append(int((t - t0).total_seconds()))
    assert times == [2, 3, 4, 6, 8, 9]
    assert schedule_from_dict(both.to_dict()) == both
    assert every(seconds=5, anchor=t0).next_after(t0 - timedelta(hours=1)) == t0
    with pytest.raises(InvalidSchedule, match="anchor"):
        every(seconds=5, anchor=datetime(2026, 1, 1))  # noqa: DTZ001
