"""ScheduleBuilder, ScheduleTemplates and last_day_of_month: the seed's meanings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.schedules import (
    BaseSchedule,
    Calendar,
    ScheduleBuilder,
    ScheduleTemplates,
    calendar_filtered,
    crontab,
    every,
    last_day_of_month,
    schedule_from_dict,
)

UTC = timezone.utc
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def runs(schedule: BaseSchedule, start: datetime, count: int,
         anchored: bool = False) -> list[datetime]:
    """``count`` successive fire times, each run feeding ``last_run_at`` when ``anchored``."""
    found, when, last = [], start, None
    for _ in range(count):
        when = schedule.next_after(when, last)
        found.append(when)
        if anchored:
            last = when
    return found


# -- last day of the month ------------------------------------------------------------------


def test_monthly_last_day_fires_on_the_last_day_of_each_month():
    schedule = ScheduleTemplates.monthly_last_day()
    assert isinstance(schedule, last_day_of_month)
    days = [d.date().isoformat() for d in runs(schedule, utc(2023, 1, 1), 18)]
    assert days == [
        "2023-01-31", "2023-02-28", "2023-03-31", "2023-04-30", "2023-05-31", "2023-06-30",
        "2023-07-31", "2023-08-31", "2023-09-30", "2023-10-31", "2023-11-30", "2023-12-31",
        "2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30",
    ]
    assert all((d.hour, d.minute) == (0, 0) for d in runs(schedule, utc(2023, 1, 1), 18))
    assert schedule.next_after(utc(2100, 2, 1)) == utc(2100, 2, 28)  # 2100 is not leap
    assert schedule.next_after(utc(2000, 2, 1)) == utc(2000, 2, 29)


def test_last_day_of_month_time_and_zone():
    schedule = ScheduleTemplates.monthly_last_day(hour=23, minute=30, timezone="Asia/Tokyo")
    fire = schedule.next_after(utc(2024, 2, 1))
    assert fire.astimezone(TOKYO) == datetime(2024, 2, 29, 23, 30, tzinfo=TOKYO)
    data = schedule.to_dict()
    assert data == {"type": "last_day_of_month", "hour": 23, "minute": 30,
                    "timezone": "Asia/Tokyo"}
    assert schedule_from_dict(data) == schedule


# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "seconds"), [
    (ScheduleTemplates.every_minute, 60),
    (ScheduleTemplates.every_5_minutes, 300),
    (ScheduleTemplates.every_15_minutes, 900),
    (ScheduleTemplates.every_30_minutes, 1800),
    (ScheduleTemplates.hourly, 3600),
    (ScheduleTemplates.every_2_hours, 7200),
    (ScheduleTemplates.every_6_hours, 21600),
    (ScheduleTemplates.every_12_hours, 43200),
])
def test_interval_templates(template, seconds):
    assert template() == every(seconds=seconds)


def test_daily_templates():
    assert runs(ScheduleTemplates.daily_at_midnight(), utc(2024, 6, 1, 5), 2) == \
        [utc(2024, 6, 2), utc(2024, 6, 3)]
    assert runs(ScheduleTemplates.daily_at_hour(3), utc(2024, 6, 1, 5), 2) == \
        [utc(2024, 6, 2, 3), utc(2024, 6, 3, 3)]
    tokyo = ScheduleTemplates.daily_at_hour(3, timezone="Asia/Tokyo")
    assert tokyo.next_after(utc(2024, 6, 1)) == utc(2024, 6, 1, 18)


def test_weekly_templates():
    saturday = utc(2024, 6, 1, 12)
    weekdays = runs(ScheduleTemplates.weekdays_at(9, 30), saturday, 6)
    assert [d.weekday() for d in weekdays] == [0, 1, 2, 3, 4, 0]
    assert all((d.hour, d.minute) == (9, 30) for d in weekdays)
    assert runs(ScheduleTemplates.weekly_on_monday(9, 0), saturday, 2) == \
        [utc(2024, 6, 3, 9), utc(2024, 6, 10, 9)]
    assert runs(ScheduleTemplates.weekend_mornings(), saturday, 3) == \
        [utc(2024, 6, 2, 8), utc(2024, 6, 8, 8), utc(2024, 6, 9, 8)]


def test_monthly_and_quarterly_templates():
    assert runs(ScheduleTemplates.monthly_first_day(), utc(2024, 6, 15), 2) == \
        [utc(2024, 7, 1), utc(2024, 8, 1)]
    assert runs(ScheduleTemplates.quarterly(), utc(2024, 2, 1), 4) == \
        [utc(2024, 4, 1), utc(2024, 7, 1), utc(2024, 10, 1), utc(2025, 1, 1)]


def test_business_hours_templates():
    monday = utc(2024, 6, 3)
    hourly = runs(ScheduleTemplates.business_hours_hourly(), monday, 9)
    assert [d.hour for d in hourly] == [9, 10, 11, 12, 13, 14, 15, 16, 9]
    assert hourly[-1].date().isoformat() == "2024-06-04"
    quarter = runs(ScheduleTemplates.business_hours_every_15_minutes(), monday, 33)
    assert quarter[0] == utc(2024, 6, 3, 9) and quarter[31] == utc(2024, 6, 3, 16, 45)
    assert quarter[32] == utc(2024, 6, 4, 9)
    friday = runs(ScheduleTemplates.business_hours_hourly(), utc(2024, 6, 7, 16, 30), 1)
    assert friday == [utc(2024, 6, 10, 9)]


# -- builder --------------------------------------------------------------------------------


def test_builder_plain_intervals():
    assert ScheduleBuilder().every_n_seconds(30).build() == every(seconds=30)
    assert ScheduleBuilder().every_n_minutes(30).build() == every(minutes=30)
    assert ScheduleBuilder().every_n_hours(2).build() == every(hours=2)
    assert ScheduleBuilder.new().every_n_days(1).build() == every(days=1)
    assert ScheduleBuilder().build() == every(hours=1)  # the seed's default
    # a zone alone does not change an interval
    assert ScheduleBuilder().every_n_hours(1).in_timezone("Asia/Tokyo").build() == \
        every(hours=1)


def test_builder_is_immutable():
    base = ScheduleBuilder().every_n_minutes(5)
    restricted = base.weekdays_only()
    assert base.build() == every(minutes=5)
    assert isinstance(restricted.build(), calendar_filtered)


def test_builder_business_hours_in_tokyo():
    schedule = ScheduleBuilder().every_n_minutes(15).business_hours_only() \
        .in_timezone("Asia/Tokyo").build()
    assert schedule == calendar_filtered(
        every(minutes=15),
        Calendar(business_hours=("09:00", "17:00"), weekdays=(0, 1, 2, 3, 4),
                 timezone="Asia/Tokyo"))
    fires = runs(schedule, utc(2024, 6, 7, 7, 30), 4, anchored=True)  # Fri 16:30 JST
    local = [f.astimezone(TOKYO).strftime("%a %H:%M") for f in fires]
    assert local == ["Fri 16:45", "Mon 09:00", "Mon 09:15", "Mon 09:30"]
    assert schedule_from_dict(schedule.to_dict()) == schedule


def test_builder_weekdays_and_weekends():
    weekdays = ScheduleBuilder().every_n_hours(1).weekdays_only() \
        .in_timezone("America/New_York").build()
    assert weekdays.calendar == Calendar(business_hours=None, weekdays=(0, 1, 2, 3, 4),
                                         timezone="America/New_York")
    weekends = ScheduleBuilder().every_n_hours(2).weekends_only().build()
    fires = runs(weekends, utc(2024, 6, 7, 20), 30, anchored=True)
    assert all(f.weekday() in (5, 6) for f in fires)
    assert fires[0] == utc(2024, 6, 8)  # Saturday midnight, when the weekend opens
    assert fires[1] == utc(2024, 6, 8, 2)
    # weekends win over weekdays; business hours keep their hours
    mixed = ScheduleBuilder().every_n_hours(1).business_hours_only().weekends_only().build()
    assert mixed.calendar == Calendar(business_hours=("09:00", "17:00"), weekdays=(5, 6))


def test_builder_every_n_days_with_business_hours_keeps_firing():
    schedule = ScheduleBuilder().every_n_days(1).business_hours_only().build()
    # Monday 20:00 + 1 day is closed (Tuesday 20:00): moved to Wednesday's opening, then daily
    fires = runs(schedule, utc(2024, 6, 3, 20), 6, anchored=True)
    assert fires == [utc(2024, 6, 5, 9), utc(2024, 6, 6, 9), utc(2024, 6, 7, 9),
                     utc(2024, 6, 10, 9), utc(2024, 6, 11, 9), utc(2024, 6, 12, 9)]


@pytest.mark.parametrize(("call", "field"), [
    (lambda: ScheduleBuilder().every_n_seconds(0), "seconds"),
    (lambda: ScheduleBuilder().every_n_minutes(-1), "minutes"),
    (lambda: ScheduleBuilder().every_n_hours(1.5), "hours"),
    (lambda: ScheduleBuilder().every_n_days(True), "days"),
    (lambda: ScheduleBuilder().in_timezone("Mars/Olympus"), "timezone"),
    (lambda: ScheduleTemplates.daily_at_hour(24), "hour"),
    (lambda: ScheduleTemplates.weekdays_at(9, 60), "minute"),
    (lambda: ScheduleTemplates.weekly_on_monday("9"), "hour"),
    (lambda: ScheduleTemplates.monthly_last_day(hour=-1), "hour"),
    (lambda: ScheduleTemplates.daily_at_midnight(timezone="Nowhere"), "timezone"),
    (lambda: last_day_of_month(minute=99), "minute"),
    (lambda: last_day_of_month(timezone=5), "timezone"),
])
def test_bad_builder_and_template_input(call, field):
    with pytest.raises(InvalidSchedule) as info:
        call()
    assert info.value.field == field
    assert field in str(info.value)


def test_template_wall_clock_kinds():
    assert ScheduleTemplates.weekdays_at(9, 0) == crontab(0, 9, "mon-fri")
    assert ScheduleTemplates.weekend_mornings().next_after(utc(2024, 6, 8, 9)) == \
        utc(2024, 6, 9, 8)
    assert ScheduleTemplates.quarterly(timezone="Europe/Paris").next_after(utc(2024, 5, 1)) \
        == utc(2024, 6, 30, 22)
    assert timedelta(0) < ScheduleTemplates.hourly().interval
