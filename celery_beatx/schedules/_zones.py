"""Time zone helpers for wall-clock schedules: lookup, offsets, DST gaps and folds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import InvalidSchedule

UTC = timezone.utc
_SECOND = timedelta(seconds=1)


def zone_key(value: object) -> str:
    """Return the IANA key for ``value`` (``None`` is ``"UTC"``), validated with zoneinfo.

    :raises InvalidSchedule: not a string / ZoneInfo, or an unknown zone.
    """
    if value is None or value is UTC:
        return "UTC"
    if isinstance(value, ZoneInfo):
        value = value.key
    if not isinstance(value, str):
        raise InvalidSchedule(f"timezone {value!r} is not a time zone name", "timezone")
    try:
        get_zone(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidSchedule(f"timezone {value!r} is unknown", "timezone") from None
    return value


def get_zone(key: str) -> tzinfo:
    """The tzinfo for an IANA key; plain ``datetime.timezone.utc`` for ``"UTC"``."""
    if key == "UTC":
        return UTC
    if not key or key.startswith(("/", ".")) or "\\" in key:
        raise ValueError(key)
    return ZoneInfo(key)


def offsets(zone: tzinfo, wall: datetime) -> tuple[timedelta, timedelta]:
    """UTC offsets of a naive wall time read with ``fold=0`` and ``fold=1``.

    Equal offsets: the wall time exists once. ``fold=0`` larger: it is ambiguous (a
    fall-back fold, ``fold=0`` is the first pass). ``fold=0`` smaller: it does not exist
    (a spring-forward gap).
    """
    first = wall.replace(tzinfo=zone)
    return first.utcoffset(), first.replace(fold=1).utcoffset()  # type: ignore[return-value]


def transition(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The instant in ``(before, after]`` at which ``zone`` switches to ``after``'s offset.

    Both are aware UTC datetimes with different offsets in ``zone`` and a single
    transition between them; the result is exact to the second.
    """
    target = after.astimezone(zone).utcoffset()
    low, high = 0, int((after - before) / _SECOND)
    base = after - high * _SECOND
    while high - low > 1:
        middle = (low + high) // 2
        if (base + middle * _SECOND).astimezone(zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return base + high * _SECOND


def gap_end(zone: tzinfo, wall: datetime, early: timedelta, late: timedelta) -> datetime:
    """The first real instant after the non-existent wall time ``wall``.

    ``early``/``late`` are the offsets before/after the spring-forward transition.
    """
    return transition(zone, (wall - late).replace(tzinfo=UTC), (wall - early).replace(tzinfo=UTC))
