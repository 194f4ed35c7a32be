"""Wall-clock schedules: Celery-style :class:`crontab` and standard-cron :class:`cron`.

Both find the next fire time by jumping field by field (month, day, hour, minute) through
local wall-clock time, then map the wall time onto a real instant with the Vixie-cron DST
rule (as implemented by cronsim):

* a *fixed-time* job (neither the minute nor the hour field starts with ``*``) runs once in
  an ambiguous fall-back hour (on the first pass) and, when its wall time is skipped by a
  spring-forward gap, at the first real instant after the gap;
* any other job follows real elapsed time: it fires at every instant whose local wall time
  matches, so in a fall-back hour it fires in both passes and in a gap not at all.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidSchedule
from ._cronfields import (
    CRON_DAY_OF_WEEK,
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    HOUR,
    MAX_DAYS,
    MINUTE,
    MONTH_OF_YEAR,
    parse_field,
)
from ._zones import UTC, gap_end, get_zone, offsets, transition, zone_key
from .base import BaseSchedule, register_kind, require_aware

__all__ = ["cron", "crontab"]

#: How far ahead (in years) the search goes before giving up (``next_after`` -> ``None``).
HORIZON_YEARS = 50

_MINUTE = timedelta(minutes=1)
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class _Matcher:
    """The expanded fields and the wall-clock search (naive datetimes, minute resolution)."""

    __slots__ = ("minutes", "hours", "days", "months", "weekdays", "day_and",
                 "_month_set", "_dow_offset")

    def __init__(self, minutes: frozenset[int], hours: frozenset[int], days: frozenset[int],
                 months: frozenset[int], weekdays: frozenset[int], day_and: bool) -> None:
        self.minutes = tuple(sorted(minutes))
        self.hours = tuple(sorted(hours))
        self.days = tuple(sorted(days))
        self.months = tuple(sorted(months))
        self.weekdays = weekdays  # 0 = Sunday
        self.day_and = day_and
        self._month_set = months
        # For each weekday w (0 = Sunday): days until the next allowed weekday (0..6).
        self._dow_offset = tuple(
            next(k for k in range(7) if (w + k) % 7 in weekdays) for w in range(7)
        )

    def first_day(self, year: int, month: int, day: int) -> int | None:
        """The first matching day ``>= day`` of the month, or ``None``."""
        last = calendar.monthrange(year, month)[1]
        if day > last:
            return None
        weekday = (calendar.weekday(year, month, day) + 1) % 7
        index = bisect_left(self.days, day)
        if self.day_and:
            for candidate in self.days[index:]:
                if candidate > last:
                    return None
                if (weekday + candidate - day) % 7 in self.weekdays:
                    return candidate
            return None
        best = self.days[index] if index < len(self.days) and self.days[index] <= last else None
        by_weekday = day + self._dow_offset[weekday]
        if by_weekday <= last and (best is None or by_weekday < best):
            best = by_weekday
        return best

    def next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall time ``>= start`` (a naive, minute-aligned datetime)."""
        year, month, day, hour, minute = start.year, start.month, start.day, start.hour, \
            start.minute
        limit = min(start.year + HORIZON_YEARS, 9999)
        while year <= limit:
            if month not in self._month_set:
                index = bisect_left(self.months, month)
                if index == len(self.months):
                    year, month = year + 1, self.months[0]
                else:
                    month = self.months[index]
                day, hour, minute = 1, 0, 0
                continue
            found = self.first_day(year, month, day)
            if found is None:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            if found != day:
                day, hour, minute = found, 0, 0
            index = bisect_left(self.hours, hour)
            if index == len(self.hours):
                day, hour, minute = day + 1, 0, 0
                continue
            if self.hours[index] != hour:
                hour, minute = self.hours[index], 0
            index = bisect_left(self.minutes, minute)
            if index == len(self.minutes):
                hour, minute = hour + 1, 0
                if hour == 24:
                    day, hour = day + 1, 0
                continue
            return datetime(year, month, day, hour, self.minutes[index])
        return None


def _after_minute(wall: datetime) -> datetime:
    """The first whole minute strictly after the naive ``wall``."""
    return wall.replace(second=0, microsecond=0) + _MINUTE


def _ceil_minute(wall: datetime) -> datetime:
    """``wall`` rounded up to a whole minute."""
    floor = wall.replace(second=0, microsecond=0)
    return floor if floor == wall else floor + _MINUTE


class _WallClockSchedule(BaseSchedule):
    """Common machinery of :class:`crontab` and :class:`cron`."""

    _matcher: _Matcher
    _fixed_time: bool
    _timezone: str

    def _setup(self, minute: str, hour: str, matcher: _Matcher, timezone: object) -> None:
        self._timezone = zone_key(timezone)
        self._zone = get_zone(self._timezone)
        self._matcher = matcher
        self._fixed_time = not minute.startswith("*") and not hour.startswith("*")

    @property
    def timezone(self) -> str:
        """IANA name of the zone the fields are read in (``"UTC"`` by default)."""
        return self._timezone

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} is immutable")
        super().__setattr__(name, value)

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """Return the first fire time strictly after ``after`` (aware UTC), or ``None``.

        ``last_run_at`` is ignored: wall-clock schedules do not depend on the last run.
        ``None`` means no fire time exists within :data:`HORIZON_YEARS` years.
        """
        after = require_aware(after, "after")
        try:
            if self._zone is UTC:
                wall = self._matcher.next_wall(_after_minute(after.replace(tzinfo=None)))
                return None if wall is None else wall.replace(tzinfo=UTC)
            if self._fixed_time:
                return self._next_fixed(after)
            return self._next_elapsed(after)
        except OverflowError:  # beyond datetime.max
            return None

    def _next_fixed(self, after: datetime) -> datetime | None:
        zone, matcher = self._zone, self._matcher
        start = _after_minute(after.astimezone(zone).replace(tzinfo=None))
        while True:
            wall = matcher.next_wall(start)
            if wall is None:
                return None
            early, late = offsets(zone, wall)
            if early == late:
                return (wall - early).replace(tzinfo=UTC)
            if early < late:  # skipped by a spring-forward gap: first instant after it
                return gap_end(zone, wall, early, late)
            first = (wall - early).replace(tzinfo=UTC)
            if first > after:
                return first  # ambiguous: the first pass only
            # ``after`` is in the second pass of this fold: the first passes are over.
            end = transition(zone, first, (wall - late).replace(tzinfo=UTC))
            start = _ceil_minute((end + early).replace(tzinfo=None))

    def _next_elapsed(self, after: datetime) -> datetime | None:
        zone, matcher = self._zone, self._matcher
        local = after.astimezone(zone)
        wall_now = local.replace(tzinfo=None)
        start = _after_minute(wall_now)
        early, late = offsets(zone, wall_now)
        if local.fold == 0 and early > late:
            # First pass of a fall-back fold: the second pass repeats wall times that are
            # not later than ``after``'s, so look at the rest of the first pass, then at the
            # second pass, and only then past the fold.
            floor = after.replace(microsecond=0)
            end = transition(zone, floor, floor + (early - late))
            fold_start = _ceil_minute((end + late).replace(tzinfo=None))
            fold_end = (end + early).replace(tzinfo=None)
            wall = matcher.next_wall(start)
            if wall is not None and wall < fold_end:
                return (wall - early).replace(tzinfo=UTC)
            wall = matcher.next_wall(fold_start)
            if wall is not None and wall < fold_end:
                return (wall - late).replace(tzinfo=UTC)
            start = _ceil_minute(fold_end)
        while True:
            wall = matcher.next_wall(start)
            if wall is None:
                return None
            early, late = offsets(zone, wall)
            if early == late:
                return (wall - early).replace(tzinfo=UTC)
            if early < late:  # does not exist: skip the whole gap
                start = _ceil_minute((gap_end(zone, wall, early, late) + late)
                                     .replace(tzinfo=None))
                continue
            first = (wall - early).replace(tzinfo=UTC)
            return first if first > after else (wall - late).replace(tzinfo=UTC)


@register_kind
class crontab(_WallClockSchedule):  # noqa: N801 - lowercase like celery's ``crontab``
    """Celery-compatible crontab: fires when every field matches the local wall time.

    Same arguments, in the same order, as :class:`celery.schedules.crontab`. Each field is a
    string in cron syntax (``*``, ``*/n``, ``a-b``, ``a-b/n``, ``a,b``, names such as
    ``mon`` or ``jan``, case-insensitive), an int, or a list/set of ints. ``day_of_week`` is
    0-6 with Sunday 0. As in Celery, a day must match *both* ``day_of_week`` and
    ``day_of_month`` (so ``crontab(0, 0, day_of_week=5, day_of_month=13)`` is Friday the
    13th). DST follows the Vixie-cron rule described in this module.

    :param timezone: IANA zone the fields are read in; ``None`` means UTC.
    :raises InvalidSchedule: a field or the zone is invalid, or the day and month fields can
        never match (the 30th of February).

    >>> crontab(minute=0, hour=9, day_of_week="mon-fri").to_dict()["day_of_week"]
    'mon-fri'
    """

    type = "crontab"

    def __init__(self, minute: Any = "*", hour: Any = "*", day_of_week: Any = "*",
                 day_of_month: Any = "*", month_of_year: Any = "*",
                 timezone: Any = None) -> None:
        self._minute, minutes = parse_field(MINUTE, minute)
        self._hour, hours = parse_field(HOUR, hour)
        self._day_of_week, weekdays = parse_field(DAY_OF_WEEK, day_of_week)
        self._day_of_month, days = parse_field(DAY_OF_MONTH, day_of_month)
        self._month_of_year, months = parse_field(MONTH_OF_YEAR, month_of_year)
        _check_days_exist(days, months, self._day_of_month, self._month_of_year)
        matcher = _Matcher(minutes, hours, days, months, weekdays, day_and=True)
        self._setup(self._minute, self._hour, matcher, timezone)

    minute = property(lambda self: self._minute, doc="Normalised minute field.")
    hour = property(lambda self: self._hour, doc="Normalised hour field.")
    day_of_week = property(lambda self: self._day_of_week, doc="Normalised day_of_week field.")
    day_of_month = property(lambda self: self._day_of_month,
                            doc="Normalised day_of_month field.")
    month_of_year = property(lambda self: self._month_of_year,
                             doc="Normalised month_of_year field.")

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form (normalised field strings and the zone name)."""
        return {
            "type": self.type,
            "minute": self._minute,
            "hour": self._hour,
            "day_of_week": self._day_of_week,
            "day_of_month": self._day_of_month,
            "month_of_year": self._month_of_year,
            "timezone": self._timezone,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> crontab:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            data.get("minute", "*"), data.get("hour", "*"), data.get("day_of_week", "*"),
            data.get("day_of_month", "*"), data.get("month_of_year", "*"),
            timezone=data.get("timezone"),
        )


@register_kind
class cron(_WallClockSchedule):  # noqa: N801 - lowercase like ``crontab``
    """A standard 5-field cron expression: ``minute hour day_of_month month day_of_week``.

    Field syntax as for :class:`crontab`; ``day_of_week`` is 0-7 (0 and 7 are Sunday), and
    the aliases ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
    ``@yearly`` and ``@annually`` are accepted (``@reboot`` is refused: it has no times).
    Unlike :class:`crontab`, standard cron's day
    rule applies: when both day fields are restricted (neither starts with ``*``) a day
    matches if *either* matches. DST follows the Vixie-cron rule described in this module.

    :param expr: the cron expression.
    :param timezone: IANA zone the fields are read in; ``None`` means UTC.
    :raises InvalidSchedule: wrong number of fields, an unknown ``@`` alias or ``@reboot``,
        an invalid field or zone, or a date that can never occur (``0 0 30 2 *``).

    >>> cron("0 9 * * 1-5", timezone="Europe/Paris").expr
    '0 9 * * 1-5'
    """

    type = "cron"

    def __init__(self, expr: str, timezone: Any = None) -> None:
        if not isinstance(expr, str):
            raise InvalidSchedule(f"cron expression {expr!r} is not a string", "expr")
        text = " ".join(expr.split()).lower()
        text = _ALIASES.get(text, text)
        if text == "@reboot":
            raise InvalidSchedule(
                "cron expression '@reboot' (run at system start) has no fire times beat "
                "could schedule; use once(...) for a single run", "expr")
        if text.startswith("@"):
            raise InvalidSchedule(
                f"cron expression {expr!r} is not a known alias (one of "
                f"{', '.join(sorted(_ALIASES))})", "expr")
        fields = text.split(" ") if text else []
        if len(fields) != 5:
            raise InvalidSchedule(
                f"cron expression {expr!r} has {len(fields)} fields, expected 5 "
                "(minute hour day_of_month month_of_year day_of_week)", "expr")
        minute, hour, dom, month, dow = fields
        _, minutes = parse_field(MINUTE, minute)
        _, hours = parse_field(HOUR, hour)
        _, days = parse_field(DAY_OF_MONTH, dom)
        _, months = parse_field(MONTH_OF_YEAR, month)
        _, weekdays = parse_field(CRON_DAY_OF_WEEK, dow)
        # Vixie cron: if either day field starts with ``*`` both must match, else either.
        day_and = dom.startswith("*") or dow.startswith("*")
        if day_and:
            _check_days_exist(days, months, dom, month)
        self._expr = text
        self._setup(minute, hour, _Matcher(minutes, hours, days, months, weekdays, day_and),
                    timezone)

    @property
    def expr(self) -> str:
        """The normalised expression (lower case, single spaces, aliases expanded)."""
        return self._expr

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form (normalised expression and the zone name)."""
        return {"type": self.type, "expr": self._expr, "timezone": self._timezone}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> cron:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data.get("expr"), timezone=data.get("timezone"))  # type: ignore[arg-type]


def _check_days_exist(days: frozenset[int], months: frozenset[int], dom: str,
                      month: str) -> None:
    if min(days) > max(MAX_DAYS[m] for m in months):
        raise InvalidSchedule(
            f"day_of_month {dom!r} never occurs in month_of_year {month!r}", "day_of_month")
