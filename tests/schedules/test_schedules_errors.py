"""Bad input raises InvalidSchedule, naming the field and the value."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.schedules import (
    Schedule,
    cron,
    crontab,
    every,
    from_celery,
    schedule_from_dict,
    solar,
)

BAD = [
    # (constructor, field, text that must appear in the message)
    (lambda: crontab(minute="61"), "minute", "minute '61' is out of range 0-59"),
    (lambda: crontab(minute=60), "minute", "'60' is out of range 0-59"),
    (lambda: crontab(minute="1,61"), "minute", "'61'"),
    (lambda: crontab(minute="*/0"), "minute", "'*/0' has an invalid step"),
    (lambda: crontab(minute="1-5/x"), "minute", "'1-5/x'"),
    (lambda: crontab(minute="1,,2"), "minute", "'1,,2'"),
    (lambda: crontab(minute="abc"), "minute", "'abc' is not a valid value"),
    (lambda: crontab(minute="5-1-2"), "minute", "'5-1-2' is not a valid range"),
    (lambda: crontab(minute=""), "minute", "is empty"),
    (lambda: crontab(minute=[]), "minute", "is empty"),
    (lambda: crontab(minute=[1, "x"]), "minute", "'x' is not an integer"),
    (lambda: crontab(minute=[1, 99]), "minute", "'99' is out of range"),
    (lambda: crontab(minute=1.5), "minute", "'1.5'"),
    (lambda: crontab(minute=True), "minute", "'True'"),
    (lambda: crontab(minute="jan"), "minute", "'jan' is not a valid value"),
    (lambda: crontab(hour="24"), "hour", "hour '24' is out of range 0-23"),
    (lambda: crontab(hour="-1"), "hour", "hour '-1' is negative"),
    (lambda: crontab(day_of_week="8"), "day_of_week", "day_of_week '8' is out of range 0-6"),
    (lambda: crontab(day_of_week=7), "day_of_week", "'7' is out of range 0-6"),
    (lambda: crontab(day_of_week="funday"), "day_of_week", "'funday' is not a valid value"),
    (lambda: crontab(day_of_month="0"), "day_of_month", "day_of_month '0' is out of range 1-31"),
    (lambda: crontab(day_of_month="32"), "day_of_month", "'32' is out of range 1-31"),
    (lambda: crontab(month_of_year="13"), "month_of_year", "month_of_year '13' is out of range"),
    (lambda: crontab(month_of_year="mon"), "month_of_year", "'mon' is not a valid value"),
    (lambda: crontab(day_of_month="30,31", month_of_year="feb"), "day_of_month",
     "day_of_month '30,31' never occurs in month_of_year 'feb'"),
    (lambda: crontab(timezone="Mars/Base"), "timezone", "timezone 'Mars/Base' is unknown"),
    (lambda: crontab(timezone=""), "timezone", "timezone '' is unknown"),
    (lambda: crontab(timezone="../../etc/passwd"), "timezone", "is unknown"),
    (lambda: crontab(timezone=3), "timezone", "timezone 3"),
    (lambda: cron("0 9 * *"), "expr", "'0 9 * *' has 4 fields, expected 5"),
    (lambda: cron("0 9 * * * *"), "expr", "has 6 fields"),
    (lambda: cron(""), "expr", "has 0 fields"),
    (lambda: cron(None), "expr", "None is not a string"),
    (lambda: cron("@reboot"), "expr", "'@reboot' (run at system start) has no fire times"),
    (lambda: cron(" @REBOOT"), "expr", "'@reboot'"),
    (lambda: cron("@fortnightly"), "expr", "'@fortnightly' is not a known alias"),
    (lambda: schedule_from_dict({"type": "cron", "expr": "@reboot"}), "expr", "'@reboot'"),
    (lambda: cron("61 * * * *"), "minute", "minute '61' is out of range 0-59"),
    (lambda: cron("* 24 * * *"), "hour", "hour '24'"),
    (lambda: cron("* * 0 * *"), "day_of_month", "day_of_month '0'"),
    (lambda: cron("* * * 13 *"), "month_of_year", "month_of_year '13'"),
    (lambda: cron("* * * * 8"), "day_of_week", "day_of_week '8' is out of range 0-7"),
    (lambda: cron("* * * * L"), "day_of_week", "day_of_week 'l' is not a valid value"),
    (lambda: cron("0 0 31 2 *"), "day_of_month", "'31' never occurs in month_of_year '2'"),
    (lambda: cron("0 0 30 2 *", timezone="Nowhere/City"), "day_of_month", "never occurs"),
    (lambda: cron("0 0 * * *", timezone="Nowhere/City"), "timezone", "'Nowhere/City'"),
    (lambda: solar("moonrise", 0, 0), "event", "event 'moonrise' is unknown"),
    (lambda: solar(None, 0, 0), "event", "event None is unknown"),
    (lambda: solar("sunrise", 91, 0), "latitude", "latitude 91 is out of range -90..90"),
    (lambda: solar("sunrise", -90.5, 0), "latitude", "latitude -90.5"),
    (lambda: solar("sunrise", float("nan"), 0), "latitude", "latitude nan"),
    (lambda: solar("sunrise", "51", 0), "latitude", "latitude '51' is not a number"),
    (lambda: solar("sunrise", 0, 181), "longitude", "longitude 181 is out of range"),
    (lambda: solar("sunrise", 0, -180.01), "longitude", "longitude -180.01"),
    (lambda: solar("sunrise", 0, 0, "high"), "elevation", "elevation 'high' is not a number"),
    (lambda: every(0), "interval", "is not positive"),
    (lambda: every(-5), "seconds", "seconds -5 is negative"),
    (lambda: every(float("nan")), "seconds", "seconds nan is not finite"),
    (lambda: every(hours=float("inf")), "hours", "hours inf is not finite"),
    (lambda: every(days=10**12), "interval", "is too long"),
    (lambda: Schedule.interval(0), "interval", "is not positive"),
    (lambda: Schedule.crontab("0", "25", "*", "*", "*"), "hour", "hour '25'"),
    (lambda: Schedule.solar("noon", 0, 0), "event", "event 'noon'"),
    (lambda: from_celery("every day"), "schedule", "'every day'"),
    (lambda: from_celery(True), "schedule", "True"),
    (lambda: from_celery(0), "interval", "is not positive"),
    (lambda: from_celery(timedelta(0)), "interval", "is not positive"),
    (lambda: schedule_from_dict({"type": "lunar"}), "type", "'lunar' is unknown"),
    (lambda: schedule_from_dict(["crontab"]), "schedule", "is not a mapping"),
    (lambda: schedule_from_dict({"type": "crontab", "minute": "99"}), "minute", "'99'"),
    (lambda: schedule_from_dict({"type": "cron", "expr": "* *"}), "expr", "2 fields"),
    (lambda: schedule_from_dict({"type": "solar", "event": "sunrise", "latitude": 99,
                                 "longitude": 0}), "latitude", "latitude 99"),
]


@pytest.mark.parametrize(("make", "field", "text"), BAD)
def test_bad_field_raises_invalid_schedule_naming_it(make, field, text):
    with pytest.raises(InvalidSchedule) as info:
        make()
    assert info.value.field == field
    assert text in str(info.value)
    assert isinstance(info.value, ValueError)


SCHEDULES = [
    every(minutes=5),
    crontab(0, 9),
    crontab(0, 9, timezone="Europe/Paris"),
    cron("*/15 * * * *", timezone="America/New_York"),
    solar("sunset", 40.7, -74.0),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_naive_datetimes_are_rejected(schedule):
    naive = datetime(2024, 6, 1, 12, 0)
    with pytest.raises(InvalidSchedule) as info:
        schedule.next_after(naive)
    assert info.value.field == "after" and "naive" in str(info.value)
    with pytest.raises(InvalidSchedule) as info:
        schedule.is_due(naive, datetime(2024, 6, 1, tzinfo=timezone.utc))
    assert info.value.field == "last_run_at"
    with pytest.raises(InvalidSchedule) as info:
        schedule.is_due(None, naive)
    assert info.value.field == "now"


@pytest.mark.parametrize("schedule", SCHEDULES[1:], ids=repr)
def test_schedules_are_immutable(schedule):
    with pytest.raises(AttributeError):
        schedule.timezone = "Asia/Tokyo"


#: From Wednesday 2024-02-28 13:07 UTC (a leap year), the next two times of each alias.
ALIAS_TIMES = {
    "@hourly": [(2024, 2, 28, 14), (2024, 2, 28, 15)],
    "@daily": [(2024, 2, 29), (2024, 3, 1)],
    "@midnight": [(2024, 2, 29), (2024, 3, 1)],
    "@weekly": [(2024, 3, 3), (2024, 3, 10)],
    "@monthly": [(2024, 3, 1), (2024, 4, 1)],
    "@yearly": [(2025, 1, 1), (2026, 1, 1)],
    "@annually": [(2025, 1, 1), (2026, 1, 1)],
}


@pytest.mark.parametrize("alias", sorted(ALIAS_TIMES))
def test_cron_aliases(alias):
    schedule = cron(alias.upper() if alias == "@daily" else alias)
    assert schedule_from_dict(schedule.to_dict()) == schedule
    assert schedule_from_dict({"type": "cron", "expr": alias}) == schedule
    t, runs = datetime(2024, 2, 28, 13, 7, tzinfo=timezone.utc), []
    for _ in range(2):
        t = schedule.next_after(t)
        runs.append(t)
    assert runs == [datetime(*parts, tzinfo=timezone.utc) for parts in ALIAS_TIMES[alias]]


def test_accepted_spellings():
    assert crontab(day_of_week="MON-Fri").day_of_week == "mon-fri"
    assert crontab(day_of_week="monday,Tuesday") == crontab(day_of_week="monday,tuesday")
    assert crontab(minute=[30, 0, 0]).minute == "0,30"
    assert crontab(minute={15}).minute == "15"
    assert crontab(minute=" 1, 2 ").minute == "1,2"
    assert crontab(month_of_year="Jan-Mar").month_of_year == "jan-mar"
    assert cron("0  9 * *   MON-FRI").expr == "0 9 * * mon-fri"
    assert cron("@daily") == cron("0 0 * * *")
    assert cron("0 0 * * 7").next_after(datetime(2024, 6, 1, tzinfo=timezone.utc)) == \
        datetime(2024, 6, 2, tzinfo=timezone.utc)  # 7 is Sunday in standard cron
    assert crontab(timezone=None).timezone == "UTC"
    assert crontab(day_of_month=29, month_of_year=2).to_dict()["day_of_month"] == "29"
    # A reversed range wraps around, like celery's: fri-mon is fri, sat, sun, mon.
    fri_to_mon = crontab(0, 0, day_of_week="fri-mon")
    assert crontab(0, 0, day_of_week="0,1,5,6").next_after(datetime(2024, 6, 4,
                                                           tzinfo=timezone.utc)) == \
        fri_to_mon.next_after(datetime(2024, 6, 4, tzinfo=timezone.utc))
