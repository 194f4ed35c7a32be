"""Business calendars: when a task is allowed to run, and :class:`calendar_filtered`.

A :class:`Calendar` allows an instant when, read in the calendar's own time zone, it falls
on an allowed weekday that is not a holiday, within business hours, and outside every
blackout period. :meth:`Calendar.next_allowed` finds the next allowed instant by jumping
(to the end of a blackout, to the next business-hours opening, to the next allowed day),
never minute by minute, so its cost does not depend on the length of a blackout.

Holidays by country use the optional ``holidays`` package
(``pip install 'celery-beatx-sql[holidays]'``), imported only when a country is given.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from ..errors import InvalidSchedule
from ._zones import UTC, get_zone, zone_key
from .base import BaseSchedule, every, register_kind, require_aware, schedule_from_dict
from .once import once, parse_instant

__all__ = ["MAX_STEPS", "SEARCH_HORIZON", "Calendar", "calendar_filtered"]

#: Searches (:meth:`Calendar.next_allowed`, :class:`calendar_filtered`) give up (``None``)
#: after this many jumps...
MAX_STEPS = 10_000
#: ...or this far past their starting point.
SEARCH_HORIZON = timedelta(days=5 * 366)

_TICK = timedelta(microseconds=1)
_DAY = timedelta(days=1)
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ALL_WEEKDAYS = (0, 1, 2, 3, 4, 5, 6)
#: Kinds without a fixed phase: a disallowed fire time is moved, not skipped.
_MOVABLE = (every, once)


def _minutes(value: Any, which: str) -> int:
    """``"HH:MM"`` (or a :class:`~datetime.time`) as minutes after midnight; 24:00 allowed."""
    if isinstance(value, time):
        if value.second or value.microsecond or value.tzinfo is not None:
            raise InvalidSchedule(
                f"business_hours {which} {value!r} must be a whole minute without a zone",
                "business_hours")
        return value.hour * 60 + value.minute
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidSchedule(
            f"business_hours {which} {value!r} is not in 'HH:MM' format", "business_hours")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise InvalidSchedule(
            f"business_hours {which} {value!r} is not a time of day", "business_hours")
    return hours * 60 + minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _business_hours(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InvalidSchedule(
            f"business_hours {value!r} is not a (start, end) pair like ('09:00', '17:00')",
            "business_hours")
    start, end = _minutes(value[0], "start"), _minutes(value[1], "end")
    if start == 24 * 60:
        raise InvalidSchedule(f"business_hours start {value[0]!r} is not a time of day",
                              "business_hours")
    if start >= end:
        raise InvalidSchedule(
            f"business_hours {value!r}: start must be before end (same day)", "business_hours")
    return start, end


def _weekdays(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidSchedule(f"weekdays {value!r} is not a collection of 0-6 (Monday=0)",
                              "weekdays")
    days = set()
    for day in value:
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise InvalidSchedule(f"weekdays item {day!r} is not an integer 0-6 (Monday=0)",
                                  "weekdays")
        days.add(day)
    if not days:
        raise InvalidSchedule("weekdays is empty: the calendar would never allow a run",
                              "weekdays")
    return tuple(sorted(days))


def _load_holidays_module() -> Any:
    try:
        import holidays
    except ImportError:
        raise InvalidSchedule(
            "holidays by country need the optional 'holidays' package: "
            "pip install 'celery-beatx-sql[holidays]'", "holidays") from None
    return holidays


def _country_holidays(country: str, subdiv: str | None, years: Any = None) -> Any:
    module = _load_holidays_module()
    try:
        return module.country_holidays(country, subdiv=subdiv, years=years)
    except NotImplementedError:
        what = f"country {country!r}" if subdiv is None else \
            f"country {country!r} with subdivision {subdiv!r}"
        raise InvalidSchedule(f"holidays: {what} is unknown to the holidays package",
                              "holidays") from None


def _holiday_date(value: Any) -> date:
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    elif isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise InvalidSchedule(f"holidays item {value!r} is not a date (or 'YYYY-MM-DD')",
                          "holidays")


def _holidays(value: Any) -> tuple[str, str | None] | tuple[date, ...] | None:
    """Normalise: ``None``, ``(country, subdiv)`` or a sorted tuple of dates."""
    if value is None:
        return None
    country: Any = None
    subdiv: Any = None
    if isinstance(value, str) and not _ISO_DATE.match(value):
        country = value
    elif isinstance(value, dict):
        if "dates" in value:
            value = value["dates"]
            if isinstance(value, (str, dict)):
                raise InvalidSchedule(f"holidays dates {value!r} is not a list", "holidays")
        elif "country" in value:
            country, subdiv = value.get("country"), value.get("subdiv")
        else:
            raise InvalidSchedule(
                f"holidays {value!r} has neither 'country' nor 'dates'", "holidays")
    elif (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
          and not _ISO_DATE.match(value[0]) and (value[1] is None or isinstance(value[1], str))
          and not (isinstance(value[1], str) and _ISO_DATE.match(value[1]))):
        country, subdiv = value
    if country is not None:
        if not isinstance(country, str) or not country.strip():
            raise InvalidSchedule(f"holidays country {country!r} is not a country code",
                                  "holidays")
        if subdiv is not None and (not isinstance(subdiv, str) or not subdiv.strip()):
            raise InvalidSchedule(f"holidays subdivision {subdiv!r} is not a code", "holidays")
        country = country.strip().upper()
        _country_holidays(country, subdiv)  # validates both
        return country, subdiv
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidSchedule(
            f"holidays {value!r} is not a country code, (country, subdivision) or dates",
            "holidays")
    return tuple(sorted({_holiday_date(item) for item in value}))


def _blackouts(value: Any) -> tuple[tuple[datetime, datetime], ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise InvalidSchedule(f"blackouts {value!r} is not a list of (start, end) pairs",
                              "blackouts")
    periods = []
    for item in value:
        if isinstance(item, (str, bytes)) or not isinstance(item, (list, tuple)) \
                or len(item) != 2:
            raise InvalidSchedule(f"blackouts item {item!r} is not a (start, end) pair",
                                  "blackouts")
        start, end = parse_instant(item[0], "blackouts"), parse_instant(item[1], "blackouts")
        if start >= end:
            raise InvalidSchedule(
                f"blackouts item ({start.isoformat()}, {end.isoformat()}): start must be "
                "before end", "blackouts")
        periods.append((start, end))
    return tuple(sorted(set(periods)))


def _merge(periods: tuple[tuple[datetime, datetime], ...]
           ) -> tuple[list[datetime], list[datetime]]:
    """Sorted, disjoint, non-touching periods as (starts, ends) lists for bisection."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for start, end in periods:  # sorted by start
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


#: The keys of a calendar's dict form (:meth:`Calendar.to_dict`).
CALENDAR_KEYS = ("business_hours", "weekdays", "holidays", "blackouts", "timezone")


class Calendar:
    """When tasks may run: business hours, weekdays, holidays and blackout periods.

    Everything except blackouts is read in the calendar's own ``timezone``. An instant is
    allowed when all of these hold:

    * its local weekday is in ``weekdays`` (Python's numbering, Monday = 0; ``None``: every
      day);
    * its local date is not a holiday;
    * its local time is in ``[start, end)`` of ``business_hours`` (``None``: all day;
      ``"24:00"`` is accepted as an end);
    * it is in no blackout period ``[start, end)``.

    Days on which a DST change skips or repeats local times are handled exactly: a repeated
    local time is allowed in both passes, a skipped one never exists.

    :param business_hours: ``(start, end)`` as ``"HH:MM"`` strings (or ``time`` values),
        start before end, or ``None``.
    :param weekdays: allowed weekdays 0-6, Monday = 0, or ``None`` for all.
    :param holidays: ``None``; a country code (``"US"``) or ``(country, subdivision)``
        (``("US", "CA")``) resolved with the ``holidays`` package; or an iterable of dates
        (``date`` objects or ``"YYYY-MM-DD"`` strings).
    :param blackouts: ``[(start, end), ...]`` of aware datetimes (or ISO strings with an
        offset), start before end; overlapping periods are allowed.
    :param timezone: IANA zone the calendar is read in (default ``"UTC"``).
    :raises InvalidSchedule: a malformed or inconsistent value; the error names the field.
        An unknown country or subdivision, or a country without the ``holidays`` package
        installed, names ``holidays``.

    >>> Calendar(business_hours=("09:00", "17:00"), weekdays=(0, 1, 2, 3, 4)).to_dict()[
    ...     "business_hours"]
    ['09:00', '17:00']
    """

    def __init__(
        self,
        business_hours: tuple[str, str] | None = ("09:00", "17:00"),
        weekdays: Iterable[int] | None = (0, 1, 2, 3, 4),
        holidays: Any = None,
        blackouts: Iterable[tuple[datetime | str, datetime | str]] | None = None,
        timezone: Any = "UTC",
    ) -> None:
        self._hours = _business_hours(business_hours)
        self._weekdays = _weekdays(weekdays)
        self._holidays = _holidays(holidays)
        self._blackouts = _blackouts(blackouts)
        self._timezone = zone_key(timezone)
        self._zone = get_zone(self._timezone)
        self._day_set = frozenset(self._weekdays or _ALL_WEEKDAYS)
        self._country = self._holidays if self._holidays and \
            isinstance(self._holidays[0], str) else None
        self._dates: frozenset[date] = frozenset() if self._country or not self._holidays \
            else frozenset(self._holidays)  # type: ignore[arg-type]
        self._by_year: dict[int, frozenset[date]] = {}
        self._starts, self._ends = _merge(self._blackouts)

    # -- properties ------------------------------------------------------------------------

    @property
    def business_hours(self) -> tuple[str, str] | None:
        """``("HH:MM", "HH:MM")`` or ``None``."""
        return None if self._hours is None else (_hhmm(self._hours[0]), _hhmm(self._hours[1]))

    weekdays = property(lambda self: self._weekdays,
                        doc="Allowed weekdays (Monday = 0), sorted, or ``None`` for all.")
    blackouts = property(lambda self: self._blackouts,
                         doc="Blackout periods as sorted ``(start, end)`` aware UTC pairs.")
    timezone = property(lambda self: self._timezone, doc="IANA zone the calendar is read in.")

    @property
    def holidays(self) -> tuple[str, str | None] | tuple[date, ...] | None:
        """``(country, subdivision)``, a sorted tuple of dates, or ``None``."""
        return self._holidays

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("Calendar is immutable")
        super().__setattr__(name, value)

    # -- day rules ------------------------------------------------------------------------

    def _holidays_of(self, year: int) -> frozenset[date]:
        found = self._by_year.get(year)
        if found is None:
            country, subdiv = self._country  # type: ignore[misc]
            found = frozenset(_country_holidays(country, subdiv, years=year).keys())
            self._by_year[year] = found
        return found

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is a holiday of this calendar."""
        if self._country is not None:
            return day in self._holidays_of(day.year)
        return day in self._dates

    def day_allowed(self, day: date) -> bool:
        """Whether runs are allowed at some time on the local date ``day`` (weekday, holiday)."""
        return day.weekday() in self._day_set and not self.is_holiday(day)

    # -- instants -------------------------------------------------------------------------

    def _blackout_end(self, when: datetime) -> datetime | None:
        index = bisect_right(self._starts, when) - 1
        if index >= 0 and when < self._ends[index]:
            return self._ends[index]
        return None

    def allows(self, dt: datetime) -> bool:
        """Whether a task may run at the aware instant ``dt``.

        :raises InvalidSchedule: ``dt`` is naive.
        """
        dt = require_aware(dt, "dt")
        if self._starts and self._blackout_end(dt) is not None:
            return False
        local = dt.astimezone(self._zone)
        if not self.day_allowed(local.date()):
            return False
        if self._hours is None:
            return True
        minute = local.hour * 60 + local.minute
        return self._hours[0] <= minute < self._hours[1]

    def _day_start(self, day: date) -> datetime:
        """The first instant (aware UTC) whose local date is ``day``."""
        return datetime.combine(day, time(0), tzinfo=self._zone).astimezone(UTC)

    def _offset(self, when: datetime) -> timedelta:
        return when.astimezone(self._zone).utcoffset()  # type: ignore[return-value]

    def _switch(self, low: datetime, high: datetime) -> datetime | None:
        """The first whole second in ``(low, high]`` with another offset than ``low``."""
        offset = self._offset(low)
        base = low.replace(microsecond=0)
        count = -(-(high - base) // timedelta(seconds=1))
        if self._offset(base + timedelta(seconds=count)) == offset:
            return None
        lo, hi = 0, count
        while hi - lo > 1:
            middle = (lo + hi) // 2
            if self._offset(base + timedelta(seconds=middle)) == offset:
                lo = middle
            else:
                hi = middle
        return base + timedelta(seconds=hi)

    def _open_in_day(self, when: datetime, day: date, day_end: datetime) -> datetime | None:
        """The first instant ``>= when`` of local date ``day`` within business hours."""
        if self._hours is None:
            return when
        midnight = datetime.combine(day, time(0))
        open_wall = midnight + timedelta(minutes=self._hours[0])
        close_wall = midnight + timedelta(minutes=self._hours[1])
        start = when
        while start < day_end:
            offset = self._offset(start)
            end = day_end
            if self._offset(day_end - _TICK) != offset:
                end = self._switch(start, day_end - _TICK) or day_end
            low = max(start, (open_wall - offset).replace(tzinfo=UTC))
            high = min(end, (close_wall - offset).replace(tzinfo=UTC))
            if low < high:
                return low
            start = end
        return None

    def next_allowed(self, dt: datetime) -> datetime | None:
        """The earliest allowed instant at or after ``dt`` (aware UTC), or ``None``.

        Jumps to the end of a blackout, to the next business-hours opening, or to the start
        of the next allowed day; its cost does not grow with the length of a blackout.
        ``None`` when nothing is allowed within :data:`SEARCH_HORIZON` of ``dt`` (a
        calendar that forbids everything, or a blackout longer than that).

        :raises InvalidSchedule: ``dt`` is naive.
        """
        when = require_aware(dt, "dt")
        try:
            limit = when + SEARCH_HORIZON
            for _ in range(MAX_STEPS):
                if when > limit:
                    return None
                end = self._blackout_end(when) if self._starts else None
                if end is not None:
                    when = end
                    continue
                day = when.astimezone(self._zone).date()
                if not self.day_allowed(day):
                    day += _DAY
                    last = limit.astimezone(self._zone).date()
                    while not self.day_allowed(day):
                        if day > last:
                            return None
                        day += _DAY
                    when = max(self._day_start(day), when + _TICK)
                    continue
                day_end = self._day_start(day + _DAY)
                opening = self._open_in_day(when, day, day_end)
                if opening is None:
                    when = max(day_end, when + _TICK)
                    continue
                if opening == when:
                    return when
                when = opening
        except OverflowError:  # beyond datetime.max
            return None
        return None

    # -- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form.

        ``holidays`` is ``None``, ``{"country": ..., "subdiv": ...}`` or ``{"dates":
        ["YYYY-MM-DD", ...]}``; blackouts are ``[[start, end], ...]`` ISO 8601 UTC strings.
        """
        holidays: dict[str, Any] | None = None
        if self._country is not None:
            holidays = {"country": self._country[0], "subdiv": self._country[1]}
        elif self._holidays:
            holidays = {"dates": [d.isoformat() for d in self._holidays]}  # type: ignore[union-attr]
        elif self._holidays is not None:
            holidays = {"dates": []}
        return {
            "business_hours": None if self._hours is None else list(self.business_hours or ()),
            "weekdays": None if self._weekdays is None else list(self._weekdays),
            "holidays": holidays,
            "blackouts": [[s.isoformat(), e.isoformat()] for s, e in self._blackouts],
            "timezone": self._timezone,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calendar:
        """Rebuild from :meth:`to_dict` output.

        :raises InvalidSchedule: not a mapping, or invalid fields.
        """
        if isinstance(data, Calendar):
            return data
        if not isinstance(data, dict):
            raise InvalidSchedule(f"calendar {data!r} is not a mapping", "calendar")
        unknown = sorted(str(key) for key in data if key not in CALENDAR_KEYS)
        if unknown:
            raise InvalidSchedule(f"calendar key {unknown[0]!r} is not one of "
                                  f"{', '.join(CALENDAR_KEYS)}", "calendar")
        return cls(
            business_hours=tuple(data["business_hours"])  # type: ignore[arg-type]
            if isinstance(data.get("business_hours"), list) else data.get("business_hours"),
            weekdays=data.get("weekdays"),
            holidays=data.get("holidays"),
            blackouts=data.get("blackouts") or (),
            timezone=data.get("timezone", "UTC"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Calendar):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Calendar({fields})"


@register_kind
class calendar_filtered(BaseSchedule):  # noqa: N801 - lowercase like the other schedule kinds
    """``schedule`` restricted to the instants ``calendar`` allows.

    :meth:`next_after` returns the first fire time of ``schedule`` that the calendar
    allows: a disallowed fire time is skipped, and the search resumes at the schedule's
    first fire time at or after :meth:`Calendar.next_allowed` (one jump per closed window,
    however long). An interval (:class:`every`) or a one-off (:class:`once`) has no fixed
    phase, so instead of being skipped its disallowed fire time is moved to the moment the
    calendar next allows a run: a ``once`` on a closed day runs when the calendar opens, and
    an interval counts from there (``every(minutes=15)`` with business hours fires at 09:00,
    09:15, ... each business day).

    When the calendar forbids every fire time (it allows nothing, a blackout is longer
    than the horizon, or the schedule only fires at disallowed times, like a crontab at
    08:00 with business hours from 09:00), the search stops after :data:`MAX_STEPS` jumps or
    :data:`SEARCH_HORIZON` past ``after`` and returns ``None``: the task has no next run.

    :param schedule: any schedule.
    :param calendar: a :class:`Calendar` (or its :meth:`Calendar.to_dict` form).
    :raises InvalidSchedule: ``schedule`` is not a schedule or ``calendar`` not a calendar.
    """

    type = "calendar_filtered"

    def __init__(self, schedule: BaseSchedule, calendar: Calendar | dict[str, Any]) -> None:
        if not isinstance(schedule, BaseSchedule):
            raise InvalidSchedule(f"schedule {schedule!r} is not a schedule", "schedule")
        if isinstance(calendar, dict):
            calendar = Calendar.from_dict(calendar)
        if not isinstance(calendar, Calendar):
            raise InvalidSchedule(f"calendar {calendar!r} is not a Calendar", "calendar")
        self._schedule = schedule
        self._calendar = calendar

    schedule = property(lambda self: self._schedule, doc="The filtered schedule.")
    calendar = property(lambda self: self._calendar, doc="The :class:`Calendar`.")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("calendar_filtered is immutable")
        super().__setattr__(name, value)

    def _filter(self, first: datetime | None, after: datetime,
                last_run_at: datetime | None) -> datetime | None:
        calendar, inner = self._calendar, self._schedule
        try:
            limit = after + SEARCH_HORIZON
        except OverflowError:
            limit = datetime.max.replace(tzinfo=UTC)
        when = first
        for _ in range(MAX_STEPS):
            if when is None or when > limit:
                return None
            if calendar.allows(when):
                return when
            allowed = calendar.next_allowed(when)
            if allowed is None or allowed > limit:
                return None
            if isinstance(inner, _MOVABLE):
                return allowed
            when = inner.next_after(allowed - _TICK, last_run_at)
        return None

    def check(self) -> None:
        """Check the filtered schedule (see :meth:`BaseSchedule.check`)."""
        self._schedule.check()

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """The first fire time of the schedule after ``after`` that the calendar allows."""
        after = require_aware(after, "after")
        return self._filter(self._schedule.next_after(after, last_run_at), after, last_run_at)

    def initial_run_at(self, now: datetime) -> datetime | None:
        """The schedule's initial run time if allowed, else the next allowed fire time."""
        now = require_aware(now, "now")
        return self._filter(self._schedule.initial_run_at(now), now, None)

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form: the schedule's and the calendar's forms."""
        return {"type": self.type, "schedule": self._schedule.to_dict(),
                "calendar": self._calendar.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> calendar_filtered:
        """Rebuild from :meth:`to_dict` output."""
        inner = data.get("schedule")
        if not isinstance(inner, BaseSchedule):
            inner = schedule_from_dict(inner)  # type: ignore[arg-type]
        return cls(inner, data.get("calendar"))  # type: ignore[arg-type]
