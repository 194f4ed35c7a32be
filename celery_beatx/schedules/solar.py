"""Solar schedules: fire at sunrise, sunset, twilight, golden or blue hour (astral)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from astral import Depression, Observer
from astral import sun as _sun

from ..errors import InvalidSchedule
from .base import BaseSchedule, register_kind, require_aware

__all__ = ["EVENTS", "solar"]

UTC = timezone.utc
#: How many days ahead :meth:`solar.next_after` looks for the event (polar day / night).
SEARCH_DAYS = 365

_Event = Callable[[Observer, date, Any], datetime]


def _period_start(func: Callable[..., tuple[datetime, datetime]],
                  direction: _sun.SunDirection) -> _Event:
    return lambda obs, day, tz: func(obs, day, direction=direction, tzinfo=tz)[0]


def _twilight(func: Callable[..., datetime], depression: Depression) -> _Event:
    return lambda obs, day, tz: func(obs, day, depression=depression, tzinfo=tz)


_EVENTS: dict[str, _Event] = {
    "sunrise": lambda obs, day, tz: _sun.sunrise(obs, day, tzinfo=tz),
    "sunset": lambda obs, day, tz: _sun.sunset(obs, day, tzinfo=tz),
    "solar_noon": lambda obs, day, tz: _sun.noon(obs, day, tzinfo=tz),
    "dawn_civil": _twilight(_sun.dawn, Depression.CIVIL),
    "dawn_nautical": _twilight(_sun.dawn, Depression.NAUTICAL),
    "dawn_astronomical": _twilight(_sun.dawn, Depression.ASTRONOMICAL),
    "dusk_civil": _twilight(_sun.dusk, Depression.CIVIL),
    "dusk_nautical": _twilight(_sun.dusk, Depression.NAUTICAL),
    "dusk_astronomical": _twilight(_sun.dusk, Depression.ASTRONOMICAL),
    "golden_hour_morning": _period_start(_sun.golden_hour, _sun.SunDirection.RISING),
    "golden_hour_evening": _period_start(_sun.golden_hour, _sun.SunDirection.SETTING),
    "blue_hour_morning": _period_start(_sun.blue_hour, _sun.SunDirection.RISING),
    "blue_hour_evening": _period_start(_sun.blue_hour, _sun.SunDirection.SETTING),
}

#: The supported event names.
EVENTS = frozenset(_EVENTS)


def _coordinate(field: str, value: object, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSchedule(f"{field} {value!r} is not a number", field)
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise InvalidSchedule(f"{field} {value!r} is out of range {-limit:g}..{limit:g}", field)
    return float(value)


@register_kind
class solar(BaseSchedule):  # noqa: N801 - lowercase like celery's ``solar``
    """Fires at a solar event seen from a place on Earth (computed with astral).

    Events: ``sunrise``, ``sunset``, ``solar_noon``, ``dawn_civil``, ``dawn_nautical``,
    ``dawn_astronomical``, ``dusk_civil``, ``dusk_nautical``, ``dusk_astronomical``,
    ``golden_hour_morning``, ``golden_hour_evening``, ``blue_hour_morning`` and
    ``blue_hour_evening``. The golden and blue hour events fire at the *start* of the
    period: ``golden_hour_morning`` when the rising sun reaches 4 degrees below the horizon,
    ``golden_hour_evening`` when the setting sun drops to 6 degrees above it,
    ``blue_hour_morning`` at 6 degrees below (rising) and ``blue_hour_evening`` at 4
    degrees below (setting).

    On days when the event does not happen (polar day or night) there is no run; the search
    looks :data:`SEARCH_DAYS` days ahead and returns ``None`` past that.

    :param event: one of the events above.
    :param latitude: degrees north, -90..90.
    :param longitude: degrees east, -180..180.
    :param elevation: metres above the horizon line.
    :raises InvalidSchedule: unknown event or a coordinate out of range.

    >>> solar("sunrise", 51.5074, -0.1278).to_dict()["event"]
    'sunrise'
    """

    type = "solar"

    def __init__(self, event: str, latitude: float, longitude: float,
                 elevation: float = 0.0) -> None:
        if not isinstance(event, str) or event not in _EVENTS:
            raise InvalidSchedule(
                f"event {event!r} is unknown (expected one of {', '.join(sorted(EVENTS))})",
                "event")
        self._event = event
        self._latitude = _coordinate("latitude", latitude, 90)
        self._longitude = _coordinate("longitude", longitude, 180)
        if isinstance(elevation, bool) or not isinstance(elevation, (int, float)) \
                or not math.isfinite(elevation):
            raise InvalidSchedule(f"elevation {elevation!r} is not a number", "elevation")
        self._elevation = float(elevation)
        self._observer = Observer(self._latitude, self._longitude, self._elevation)
        # Dates are read in local mean solar time so that no event falls near midnight.
        self._local = timezone(timedelta(minutes=round(self._longitude * 4)))

    event = property(lambda self: self._event, doc="The solar event name.")
    latitude = property(lambda self: self._latitude, doc="Latitude in degrees north.")
    longitude = property(lambda self: self._longitude, doc="Longitude in degrees east.")
    elevation = property(lambda self: self._elevation, doc="Elevation in metres.")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("solar is immutable")
        super().__setattr__(name, value)

    def occurrence(self, day: date) -> datetime | None:
        """The event on local (mean solar) date ``day`` in aware UTC, or ``None``."""
        try:
            when = _EVENTS[self._event](self._observer, day, self._local)
        except ValueError:  # astral: the sun does not reach that elevation that day
            return None
        return when.astimezone(UTC)

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """Return the first occurrence strictly after ``after`` (aware UTC), or ``None``.

        ``last_run_at`` is ignored. Days without the event are skipped, up to
        :data:`SEARCH_DAYS` days ahead.
        """
        after = require_aware(after, "after")
        day = after.astimezone(self._local).date() - timedelta(days=1)
        for _ in range(SEARCH_DAYS + 2):
            when = self.occurrence(day)
            if when is not None and when > after:
                return when
            try:
                day += timedelta(days=1)
            except OverflowError:
                return None
        return None

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form."""
        return {
            "type": self.type,
            "event": self._event,
            "latitude": self._latitude,
            "longitude": self._longitude,
            "elevation": self._elevation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> solar:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data.get("event"), data.get("latitude"),  # type: ignore[arg-type]
                   data.get("longitude"), data.get("elevation", 0.0))  # type: ignore[arg-type]
