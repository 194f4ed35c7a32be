"""Schedules: pure computation of fire times on aware datetimes (no I/O, no Celery).

Every schedule is an immutable value with ``next_after``, ``is_due``, ``initial_run_at``
and a lossless ``to_dict`` form that :func:`schedule_from_dict` reads back.
"""

from __future__ import annotations

from datetime import datetime

from .base import BaseSchedule, every, register_kind, schedule_from_dict
from .calendar import Calendar, calendar_filtered
from .composite import all_of, any_of
from .convert import from_celery
from .crontab import cron, crontab
from .custom import custom, is_registered, register_schedule, unregister_schedule
from .memory import celery_schedule
from .once import once
from .solar import solar
from .templates import ScheduleBuilder, ScheduleTemplates, last_day_of_month

__all__ = [
    "BaseSchedule",
    "Calendar",
    "Schedule",
    "ScheduleBuilder",
    "ScheduleTemplates",
    "all_of",
    "any_of",
    "calendar_filtered",
    "celery_schedule",
    "cron",
    "crontab",
    "custom",
    "every",
    "from_celery",
    "is_registered",
    "last_day_of_month",
    "once",
    "register_kind",
    "register_schedule",
    "schedule_from_dict",
    "solar",
    "unregister_schedule",
]


class Schedule:
    """The seed's constructor spellings, e.g. ``Schedule.crontab("0", "9", "1", "*", "*")``."""

    @staticmethod
    def interval(seconds: float) -> every:
        """Every ``seconds`` seconds."""
        return every(seconds=seconds)

    @staticmethod
    def crontab(minute: object = "*", hour: object = "*", day_of_week: object = "*",
                day_of_month: object = "*", month_of_year: object = "*",
                timezone: object = None) -> crontab:
        """A :class:`crontab` (fields in Celery's order, day of week before day of month)."""
        return crontab(minute, hour, day_of_week, day_of_month, month_of_year,
                       timezone=timezone)

    @staticmethod
    def solar(event: str, lat: float, lon: float, elevation: float = 0.0) -> solar:
        """A :class:`solar` schedule at latitude ``lat``, longitude ``lon``."""
        return solar(event, lat, lon, elevation)

    @staticmethod
    def once(at: datetime | str, cleanup: str = "disable") -> once:
        """A :class:`once` one-off at the aware datetime ``at``."""
        return once(at, cleanup)
