"""The field-by-field search: rare dates are found fast, impossible ones end in None."""

from __future__ import annotations

from datetime import datetime, timezone

from celery_beatx.schedules import cron, crontab

UTC = timezone.utc


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_rare_dates():
    friday_13th = crontab(0, 0, day_of_week="fri", day_of_month=13)
    assert friday_13th.next_after(_utc(2024, 9, 13)) == _utc(2024, 12, 13)
    monday_feb_29 = crontab(0, 0, day_of_week="mon", day_of_month=29, month_of_year=2)
    assert monday_feb_29.next_after(_utc(2024, 3, 1)) == _utc(2044, 2, 29)
    assert cron("0 12 29 2 *").next_after(_utc(2097, 1, 1)) == _utc(2104, 2, 29, 12)
    assert cron("59 23 31 12 *").next_after(_utc(2024, 12, 31, 23, 59)) == \
        _utc(2025, 12, 31, 23, 59)
    assert crontab("*/20", "*/7").next_after(_utc(2024, 1, 31, 21, 40)) == _utc(2024, 2, 1)


def test_standard_cron_or_rule():
    # Both day fields restricted: the 13th OR any Friday.
    either = cron("0 0 13 * 5")
    assert either.next_after(_utc(2024, 9, 1)) == _utc(2024, 9, 6)   # a Friday
    assert either.next_after(_utc(2024, 9, 10)) == _utc(2024, 9, 13)  # the 13th
    # One starts with ``*``: both must match (Vixie cron).
    assert cron("0 0 */2 * 5").next_after(_utc(2024, 9, 1)) == _utc(2024, 9, 13)


def test_strictly_after_and_seconds():
    every_minute = crontab()
    assert every_minute.next_after(_utc(2024, 1, 1, 0, 0)) == _utc(2024, 1, 1, 0, 1)
    assert every_minute.next_after(datetime(2024, 1, 1, 0, 0, 59, 999999, tzinfo=UTC)) == \
        _utc(2024, 1, 1, 0, 1)


def test_end_of_time_gives_none():
    assert cron("0 0 29 2 *").next_after(_utc(9997, 1, 1)) is None
    assert crontab().next_after(datetime(9999, 12, 31, 23, 59, tzinfo=UTC)) is None

