"""Fire times of a schedule within a window (what ``backfill`` queues)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_beatx import Calendar, InvalidSchedule, any_of, cron, every, once
from celery_beatx.schedules import calendar_filtered
from celery_beatx.schedules.occurrences import occurrences

UTC = timezone.utc
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_an_interval_stays_on_the_grid_of_its_reference():
    got = occurrences(every(hours=1), START, at(11), reference=at(20, 17, day=5))
    assert got == [at(8, 17), at(9, 17), at(10, 17)]
    # A reference before the window, and on the window's start.
    assert occurrences(every(minutes=30), START, at(9), reference=at(1, 10)) == \
        [at(8, 10), at(8, 40)]
    assert occurrences(every(minutes=30), START, at(9), reference=START) == [at(8), at(8, 30)]


def test_an_interval_without_reference_starts_at_the_window():
    assert occurrences(every(minutes=20), START, at(9)) == [at(8), at(8, 20), at(8, 40)]


def test_the_window_is_half_open():
    assert occurrences(cron("0 * * * *"), at(8), at(10)) == [at(8), at(9)]


def test_other_kinds_fire_at_their_own_times():
    assert occurrences(cron("*/15 8 * * *"), START, at(9)) == \
        [at(8), at(8, 15), at(8, 30), at(8, 45)]
    assert occurrences(once(at(8, 5)), START, at(9)) == [at(8, 5)]
    assert occurrences(once(at(7)), START, at(9)) == []
    anchored = every(hours=2, anchor=at(1))
    assert occurrences(anchored, START, at(12)) == [at(9), at(11)]
    combined = any_of(cron("0 9 * * *"), cron("30 8 * * *"))
    assert occurrences(combined, START, at(10)) == [at(8, 30), at(9)]


def test_a_calendar_filtered_schedule_is_followed_as_beat_follows_it():
    office = Calendar(business_hours=("09:00", "11:00"), timezone="UTC")
    hourly = calendar_filtered(cron("0 * * * *"), office)
    assert occurrences(hourly, START, at(13)) == [at(9), at(10)]
    weekdays = Calendar(business_hours=None, weekdays=(0, 1, 2, 3, 4), timezone="UTC")
    daily = calendar_filtered(cron("0 8 * * *"), weekdays)
    got = occurrences(daily, at(0, day=6), at(0, day=10))  # Friday to Tuesday
    assert got == [at(8, day=6), at(8, day=9)]
    # An interval is moved to the calendar's next opening, then goes on from there.
    half_hourly = calendar_filtered(every(minutes=30), office)
    assert occurrences(half_hourly, START, at(12), reference=at(7, 50)) == \
        [at(9), at(9, 30), at(10), at(10, 30)]


def test_too_many_fire_times_are_refused():
    assert len(occurrences(every(minutes=1), START, START + timedelta(minutes=5),
                           limit=5)) == 5
    with pytest.raises(InvalidSchedule) as err:
        occurrences(every(minutes=1), START, START + timedelta(minutes=6), limit=5)
    assert err.value.field == "end" and "more than 5" in str(err.value)


@pytest.mark.parametrize("start, end, field", [
    (datetime(2026, 3, 2, 8), at(9), "start"),
    (START, datetime(2026, 3, 2, 9), "end"),
    (START, START, "end"),
    (at(9), START, "end"),
])
def test_bad_windows(start, end, field):
    with pytest.raises(InvalidSchedule) as err:
        occurrences(every(minutes=1), start, end)
    assert err.value.field == field
