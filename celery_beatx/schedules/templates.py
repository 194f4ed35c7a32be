"""The seed's :class:`ScheduleBuilder` and :class:`ScheduleTemplates`, and
:class:`last_day_of_month` (what ``ScheduleTemplates.monthly_last_day()`` builds).
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ..errors import InvalidSchedule
from ._zones import get_zone, zone_key
from .base import BaseSchedule, every, register_kind, require_aware
from .calendar import Calendar, calendar_filtered
from .crontab import crontab

__all__ = ["BUSINESS_HOURS", "ScheduleBuilder", "ScheduleTemplates", "last_day_of_month"]

#: Business hours of the builder and the templates: 09:00 (included) to 17:00 (excluded).
BUSINESS_HOURS = ("09:00", "17:00")
_WEEKDAYS = (0, 1, 2, 3, 4)
_WEEKEND = (5, 6)


def _int_field(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSchedule(f"{field} {value!r} is not an integer", field)
    if not low <= value <= high:
        raise InvalidSchedule(f"{field} {value!r} is out of range {low}-{high}", field)
    return value


@register_kind
class last_day_of_month(BaseSchedule):  # noqa: N801 - lowercase like the other schedule kinds
    """Fires on the last day of every month (28th-31st) at ``hour:minute`` local time.

    January 31, February 28 (29 in leap years), March 31, April 30, ... DST follows the
    crontab rule (a time skipped by a spring-forward gap runs just after the gap, a repeated
    one runs once).

    :param hour: 0-23.
    :param minute: 0-59.
    :param timezone: IANA zone the time is read in; ``None`` means UTC.
    :raises InvalidSchedule: an hour, minute or zone out of range.

    >>> from datetime import datetime, timezone
    >>> last_day_of_month().next_after(datetime(2024, 2, 1, tzinfo=timezone.utc)).date()
    datetime.date(2024, 2, 29)
    """

    type = "last_day_of_month"

    def __init__(self, hour: int = 0, minute: int = 0, timezone: Any = None) -> None:
        self._hour = _int_field(hour, "hour", 0, 23)
        self._minute = _int_field(minute, "minute", 0, 59)
        self._timezone = zone_key(timezone)
        self._zone = get_zone(self._timezone)
        at = {"minute": minute, "hour": hour, "timezone": self._timezone}
        self._long = crontab(day_of_month=31, month_of_year="1,3,5,7,8,10,12", **at)
        self._short = crontab(day_of_month=30, month_of_year="4,6,9,11", **at)
        self._leap = crontab(day_of_month=29, month_of_year=2, **at)
        self._feb28 = crontab(day_of_month=28, month_of_year=2, **at)

    hour = property(lambda self: self._hour, doc="Hour of the run, 0-23.")
    minute = property(lambda self: self._minute, doc="Minute of the run, 0-59.")
    timezone = property(lambda self: self._timezone, doc="IANA zone (``'UTC'`` by default).")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("last_day_of_month is immutable")
        super().__setattr__(name, value)

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """The first last-day-of-month run strictly after ``after``; ``last_run_at`` is ignored."""
        after = require_aware(after, "after")
        found = [self._long.next_after(after), self._short.next_after(after),
                 self._leap.next_after(after)]
        feb28 = self._feb28.next_after(after)
        # February 28 is the last day only outside leap years (never two leap years in a row).
        for _ in range(2):
            if feb28 is None or not _stdlib_calendar.isleap(feb28.astimezone(self._zone).year):
                break
            feb28 = self._feb28.next_after(feb28)
        found.append(feb28)
        times = [t for t in found if t is not None]
        return min(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form."""
        return {"type": self.type, "hour": self._hour, "minute": self._minute,
                "timezone": self._timezone}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> last_day_of_month:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data.get("hour", 0), data.get("minute", 0), data.get("timezone"))


@dataclass(frozen=True)
class ScheduleBuilder:
    """Fluent, immutable schedule builder (the seed's ``ScheduleBuilder``).

    Every method returns a new builder; :meth:`build` returns the schedule::

        ScheduleBuilder().every_n_minutes(15).business_hours_only().in_timezone("Asia/Tokyo")
            .build()

    builds ``calendar_filtered(every(minutes=15), Calendar(("09:00", "17:00"), (0, 1, 2, 3,
    4), timezone="Asia/Tokyo"))``: every 15 minutes, Monday to Friday, 09:00 to 17:00
    Tokyo time (the interval restarts at 09:00 each business day). Without a restriction
    it builds a plain :class:`every` (the time zone does not affect an interval). As in
    the seed, the interval defaults to one hour, ``weekends_only`` wins over
    ``weekdays_only``, and ``business_hours_only`` means Monday to Friday, 09:00-17:00
    (combined with ``weekends_only``: Saturday and Sunday, 09:00-17:00).
    """

    interval_seconds: int | None = None
    business_hours: bool = False
    weekdays: bool = False
    weekends: bool = False
    timezone: str | None = None

    @classmethod
    def new(cls) -> ScheduleBuilder:
        """An empty builder (the seed's ``ScheduleBuilder::new()``)."""
        return cls()

    def _every(self, n: Any, field: str, unit: int) -> ScheduleBuilder:
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidSchedule(f"{field} {n!r} is not an integer", field)
        if n <= 0:
            raise InvalidSchedule(f"{field} {n!r} is not positive", field)
        return replace(self, interval_seconds=n * unit)

    def every_n_seconds(self, n: int) -> ScheduleBuilder:
        """Every ``n`` seconds."""
        return self._every(n, "seconds", 1)

    def every_n_minutes(self, n: int) -> ScheduleBuilder:
        """Every ``n`` minutes."""
        return self._every(n, "minutes", 60)

    def every_n_hours(self, n: int) -> ScheduleBuilder:
        """Every ``n`` hours."""
        return self._every(n, "hours", 3600)

    def every_n_days(self, n: int) -> ScheduleBuilder:
        """Every ``n`` days."""
        return self._every(n, "days", 86400)

    def business_hours_only(self) -> ScheduleBuilder:
        """Only Monday to Friday, 09:00 to 17:00."""
        return replace(self, business_hours=True, weekdays=True)

    def weekdays_only(self) -> ScheduleBuilder:
        """Only Monday to Friday."""
        return replace(self, weekdays=True)

    def weekends_only(self) -> ScheduleBuilder:
        """Only Saturday and Sunday."""
        return replace(self, weekends=True)

    def in_timezone(self, timezone: str) -> ScheduleBuilder:
        """Read the restrictions in the IANA zone ``timezone`` (default UTC).

        :raises InvalidSchedule: unknown zone.
        """
        return replace(self, timezone=zone_key(timezone))

    def calendar(self) -> Calendar | None:
        """The :class:`Calendar` of the restrictions, or ``None`` without restrictions."""
        if not (self.business_hours or self.weekdays or self.weekends):
            return None
        days = _WEEKEND if self.weekends else _WEEKDAYS
        hours = BUSINESS_HOURS if self.business_hours else None
        return Calendar(business_hours=hours, weekdays=days, timezone=self.timezone or "UTC")

    def build(self) -> BaseSchedule:
        """The schedule: :class:`every`, wrapped in :class:`calendar_filtered` if restricted."""
        interval = every(seconds=self.interval_seconds or 3600)
        restriction = self.calendar()
        return interval if restriction is None else calendar_filtered(interval, restriction)


class ScheduleTemplates:
    """Ready-made schedules for common patterns (the seed's ``ScheduleTemplates``).

    The "common intervals" are :class:`every` intervals; the others are wall-clock
    schedules read in ``timezone`` (``None``: UTC). Business hours are Monday to Friday
    from 09:00 (included) to 17:00 (excluded), as in :class:`ScheduleBuilder`.
    """

    # -- common intervals ------------------------------------------------------------------

    @staticmethod
    def every_minute() -> every:
        """Every 60 seconds."""
        return every(minutes=1)

    @staticmethod
    def every_5_minutes() -> every:
        """Every 5 minutes."""
        return every(minutes=5)

    @staticmethod
    def every_15_minutes() -> every:
        """Every 15 minutes."""
        return every(minutes=15)

    @staticmethod
    def every_30_minutes() -> every:
        """Every 30 minutes."""
        return every(minutes=30)

    @staticmethod
    def hourly() -> every:
        """Every hour."""
        return every(hours=1)

    @staticmethod
    def every_2_hours() -> every:
        """Every 2 hours."""
        return every(hours=2)

    @staticmethod
    def every_6_hours() -> every:
        """Every 6 hours."""
        return every(hours=6)

    @staticmethod
    def every_12_hours() -> every:
        """Every 12 hours."""
        return every(hours=12)

    # -- daily -----------------------------------------------------------------------------

    @staticmethod
    def daily_at_midnight(timezone: Any = None) -> crontab:
        """Every day at 00:00."""
        return crontab(0, 0, timezone=timezone)

    @staticmethod
    def daily_at_hour(hour: int, timezone: Any = None) -> crontab:
        """Every day at ``hour``:00 (0-23)."""
        return crontab(0, _int_field(hour, "hour", 0, 23), timezone=timezone)

    # -- weekly ----------------------------------------------------------------------------

    @staticmethod
    def weekdays_at(hour: int, minute: int = 0, timezone: Any = None) -> crontab:
        """Monday to Friday at ``hour:minute``."""
        return crontab(_int_field(minute, "minute", 0, 59), _int_field(hour, "hour", 0, 23),
                       "mon-fri", timezone=timezone)

    @staticmethod
    def weekly_on_monday(hour: int, minute: int = 0, timezone: Any = None) -> crontab:
        """Every Monday at ``hour:minute``."""
        return crontab(_int_field(minute, "minute", 0, 59), _int_field(hour, "hour", 0, 23),
                       "mon", timezone=timezone)

    @staticmethod
    def weekend_mornings(timezone: Any = None) -> crontab:
        """Saturday and Sunday at 08:00."""
        return crontab(0, 8, "sat,sun", timezone=timezone)

    # -- monthly ---------------------------------------------------------------------------

    @staticmethod
    def monthly_first_day(timezone: Any = None) -> crontab:
        """The 1st of every month at 00:00."""
        return crontab(0, 0, day_of_month=1, timezone=timezone)

    @staticmethod
    def monthly_last_day(hour: int = 0, minute: int = 0,
                         timezone: Any = None) -> last_day_of_month:
        """The last day of every month (28th-31st) at ``hour:minute`` (default 00:00)."""
        return last_day_of_month(hour, minute, timezone)

    # -- business hours --------------------------------------------------------------------

    @staticmethod
    def business_hours_hourly(timezone: Any = None) -> crontab:
        """On the hour during business hours: Monday to Friday, 09:00 to 16:00."""
        return crontab(0, "9-16", "mon-fri", timezone=timezone)

    @staticmethod
    def business_hours_every_15_minutes(timezone: Any = None) -> crontab:
        """Every 15 minutes during business hours: Monday to Friday, 09:00 to 16:45."""
        return crontab("*/15", "9-16", "mon-fri", timezone=timezone)

    # -- quarterly -------------------------------------------------------------------------

    @staticmethod
    def quarterly(timezone: Any = None) -> crontab:
        """January, April, July and October 1st at 00:00."""
        return crontab(0, 0, day_of_month=1, month_of_year="1,4,7,10", timezone=timezone)
