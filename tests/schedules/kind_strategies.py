"""Hypothesis strategies shared by the tests of the schedule kinds added on top of the core."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from celery_beatx.schedules import (
    BaseSchedule,
    Calendar,
    all_of,
    any_of,
    calendar_filtered,
    crontab,
    custom,
    every,
    last_day_of_month,
    once,
    register_schedule,
)

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Zones with DST (including midnight transitions, 30-minute DST, 45-minute offsets).
ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Havana",
         "Asia/Beirut", "America/Santiago", "Pacific/Chatham", "Asia/Kolkata"]

instants = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2040, 1, 1),
    timezones=st.sampled_from([UTC, *map(ZoneInfo, ZONES[1:])]),
).map(lambda d: d.astimezone(UTC))


@register_schedule("test_every_n_minutes_aligned")
def _aligned(last_run_at: datetime | None, now: datetime, n: int = 5) -> datetime:
    """The next whole multiple of ``n`` minutes (counted from the Unix epoch) after ``now``."""
    minutes = (now - EPOCH) // timedelta(minutes=1)
    return EPOCH + timedelta(minutes=(minutes // n + 1) * n)


@register_schedule("test_after_last_run")
def _after_last(last_run_at: datetime | None, now: datetime, seconds: float = 60) -> datetime:
    """``seconds`` after the last run (or after ``now``), always after ``now``."""
    step = timedelta(seconds=seconds)
    anchor = last_run_at or now
    if anchor + step > now:
        return anchor + step
    return anchor + step * ((now - anchor) // step + 1)


customs = st.one_of(
    st.integers(1, 120).map(lambda n: custom("test_every_n_minutes_aligned", n=n)),
    st.integers(1, 10**5).map(lambda s: custom("test_after_last_run", seconds=s)),
)
onces = st.builds(once, instants, st.sampled_from(["disable", "delete"]))
simple_crontabs = st.builds(
    crontab,
    st.sampled_from(["0", "*/15", "30", "*/5", "0,20,40"]),
    st.sampled_from(["*", "9", "*/2", "8-17", "0,12"]),
    st.sampled_from(["*", "mon-fri", "sat,sun", "1"]),
    st.sampled_from(["*", "1", "1-15", "28"]),
    st.sampled_from(["*", "*/3", "jan,jul"]),
    st.sampled_from([None, *ZONES]),
)
intervals = st.one_of(
    st.integers(1, 10**6).map(lambda s: every(seconds=s)),
    st.sampled_from([every(minutes=5), every(minutes=15), every(hours=1), every(days=1)]),
)
last_days = st.builds(last_day_of_month, st.integers(0, 23), st.integers(0, 59),
                      st.sampled_from([None, *ZONES]))
leaves = st.one_of(simple_crontabs, intervals, onces, customs, last_days)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def business_hours(draw: st.DrawFn) -> tuple[str, str] | None:
    if draw(st.booleans()):
        return None
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(start + 1, 24 * 60))
    return _hhmm(start), _hhmm(end)


@st.composite
def blackouts(draw: st.DrawFn) -> list[tuple[datetime, datetime]]:
    periods = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(instants)
        length = draw(st.sampled_from([
            timedelta(minutes=draw(st.integers(1, 600))),
            timedelta(days=draw(st.integers(1, 40))),
            timedelta(days=draw(st.integers(100, 800))),
        ]))
        periods.append((start, start + length))
    return periods


holiday_dates = st.lists(st.dates(min_value=date(2001, 1, 1), max_value=date(2040, 1, 1)),
                         max_size=30)

calendars = st.builds(
    Calendar,
    business_hours=business_hours(),
    weekdays=st.one_of(st.none(), st.sets(st.integers(0, 6), min_size=1).map(sorted)),
    holidays=st.one_of(st.none(), holiday_dates, st.sampled_from(["US", ("DE", "BY")])),
    blackouts=blackouts(),
    timezone=st.sampled_from(ZONES),
)


def _extend(children: st.SearchStrategy[BaseSchedule]) -> st.SearchStrategy[BaseSchedule]:
    members = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        members.map(lambda ms: any_of(*ms)),
        members.map(lambda ms: all_of(*ms)),
        st.builds(calendar_filtered, children, calendars),
    )


#: Any schedule of the new kinds, composites nested up to two levels.
schedules = st.recursive(leaves, _extend, max_leaves=4)
