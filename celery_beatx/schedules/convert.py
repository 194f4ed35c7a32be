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

__all__ = ["class_path", "from_celery", "not_convertible", "safe_repr"]


def from_celery(obj: Any, app_timezone: Any = None) -> BaseSchedule:
    """Convert a ``beat_schedule`` value into a celery-beatx schedule.

    Accepted: our own schedules (returned unchanged); a number of seconds or a
    :class:`~datetime.timedelta` (-> :class:`every`); an instance of exactly
    ``celery.schedules.schedule`` (-> :class:`every`), ``crontab`` (-> :class:`crontab` with
    the same fields, read in ``app_timezone``, as Celery does, or UTC when it is ``None``) or
    ``solar`` (-> :class:`solar`).

    Refused, because no schedule of ours fires at the same times: a subclass of one of those
    (it may override ``is_due()`` or ``remaining_estimate()``) or any other Celery
    ``BaseSchedule``, a schedule with a ``nowfun`` of its own, and a ``relative=True``
    interval.  Beat drives such objects from ``beat_schedule`` in its own memory (see
    :class:`~celery_beatx.schedules.memory.celery_schedule`).

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
    if celery_schedules is not None and isinstance(obj, celery_schedules.BaseSchedule):
        why = not_convertible(obj, celery_schedules.schedule, celery_schedules.crontab,
                              celery_schedules.solar)
        if why is not None:
            raise InvalidSchedule(
                f"schedule {safe_repr(obj)} ({class_path(obj)}) {why}: "
                "celery-beatx cannot store it as one of its own schedules; put it in "
                "beat_schedule, where beat drives it with its own is_due()", "schedule")
        if type(obj) is celery_schedules.crontab:
            return crontab(
                obj._orig_minute, obj._orig_hour, obj._orig_day_of_week,
                obj._orig_day_of_month, obj._orig_month_of_year, timezone=app_timezone,
            )
        if type(obj) is celery_schedules.solar:
            return solar(obj.event, obj.lat, obj.lon)
        return every(seconds=obj.run_every.total_seconds())
    raise InvalidSchedule(f"schedule {obj!r} is not a schedule celery-beatx can convert",
                          "schedule")


def class_path(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s class."""
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def safe_repr(obj: Any, limit: int = 200) -> str:
    """``repr(obj)`` cut to ``limit`` characters; never raises (a user ``__repr__`` may)."""
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not hide the real message
        text = f"<{class_path(obj)} object (repr raised {type(exc).__name__})>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def not_convertible(obj: Any, interval_cls: type, crontab_cls: type,
                    solar_cls: type) -> str | None:
    """Why the Celery schedule ``obj`` has no exact equivalent here (``None``: it has one).

    Only instances of exactly Celery's ``schedule`` (``interval_cls``), ``crontab`` and
    ``solar`` classes, with no ``nowfun`` of their own and (for ``schedule``) not
    ``relative``, are converted.  The classes are passed in, so that this package does not
    import Celery.
    """
    if type(obj) not in (interval_cls, crontab_cls, solar_cls):
        return "is a custom schedule class"
    if getattr(obj, "nowfun", None) is not None:
        return "has its own nowfun"
    if type(obj) is interval_cls and getattr(obj, "relative", False):
        return "is relative=True"
    return None
