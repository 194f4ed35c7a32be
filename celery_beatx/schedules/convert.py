"""Conversion of Celery's schedule objects (and plain numbers) into celery-beatx schedules.

Celery is imported lazily, inside :func:`from_celery` only, so the rest of
:mod:`celery_beatx.schedules` stays free of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..errors import InvalidSchedule
from .base import BaseSchedule, every
from .crontab import crontab
from .solar import solar

__all__ = ["from_celery"]


def from_celery(obj: Any, app_timezone: Any = None) -> BaseSchedule:
    """Convert a ``beat_schedule`` value into a celery-beatx schedule.

    Accepted: our own schedules (returned unchanged); a number of seconds or a
    :class:`~datetime.timedelta` (-> :class:`every`); ``celery.schedules.schedule``
    (-> :class:`every`); ``celery.schedules.crontab`` (-> :class:`crontab` with the same
    fields, read in ``app_timezone``, as Celery does, or UTC when it is ``None``);
    ``celery.schedules.solar`` (-> :class:`solar`). A celery ``schedule``'s ``relative``
    flag is dropped: intervals are anchored on the last run.

    :param obj: the schedule to convert.
    :param app_timezone: the Celery app's ``timezone`` setting (IANA name or ZoneInfo).
    :raises InvalidSchedule: anything else, or invalid values.
    """
    if isinstance(obj, BaseSchedule):
        return obj
    if isinstance(obj, bool):
        raise InvalidSchedule(f"schedule {obj!r} is not a schedule", "schedule")
    if isinstance(obj, (int, float)):
        return every(seconds=obj)
    if isinstance(obj, timedelta):
        return every(seconds=obj.total_seconds())
    try:
        from celery import schedules as celery_schedules
    except ImportError:  # pragma: no cover - celery is a dependency
        celery_schedules = None
    if celery_schedules is not None:
        if isinstance(obj, celery_schedules.crontab):
            return crontab(
                obj._orig_minute, obj._orig_hour, obj._orig_day_of_week,
                obj._orig_day_of_month, obj._orig_month_of_year, timezone=app_timezone,
            )
        if isinstance(obj, celery_schedules.solar):
            return solar(obj.event, obj.lat, obj.lon)
        if isinstance(obj, celery_schedules.schedule):
            return every(seconds=obj.run_every.total_seconds())
    raise InvalidSchedule(f"schedule {obj!r} is not a schedule celery-beatx can convert",
                          "schedule")
