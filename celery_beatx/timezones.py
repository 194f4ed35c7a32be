"""Time zone utilities (the seed's ``TimezoneUtils``), on :mod:`zoneinfo`.

Every function that depends on the current time takes an optional ``now`` / ``at``
(aware datetime; default: the real clock). Unknown zones raise
:class:`~celery_beatx.errors.InvalidSchedule` naming ``timezone``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import available_timezones

from .errors import InvalidSchedule
from .schedules._zones import get_zone, zone_key
from .schedules.base import require_aware
from .schedules.crontab import crontab

__all__ = ["COMMON_ABBREVIATIONS", "TimezoneInfo", "TimezoneUtils"]

UTC = timezone.utc

#: Common abbreviations and the IANA zone each usually stands for (as in the seed).
COMMON_ABBREVIATIONS: dict[str, str] = {
    # North America
    "EST": "America/New_York", "EDT": "America/New_York",
    "CST": "America/Chicago", "CDT": "America/Chicago",
    "MST": "America/Denver", "MDT": "America/Denver",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles",
    "AKST": "America/Anchorage", "AKDT": "America/Anchorage",
    "HST": "Pacific/Honolulu",
    # Europe
    "GMT": "Europe/London", "BST": "Europe/London",
    "CET": "Europe/Paris", "CEST": "Europe/Paris",
    "EET": "Europe/Athens", "EEST": "Europe/Athens",
    # Asia
    "JST": "Asia/Tokyo", "KST": "Asia/Seoul", "CST_CHINA": "Asia/Shanghai",
    "IST": "Asia/Kolkata", "SGT": "Asia/Singapore", "HKT": "Asia/Hong_Kong",
    # Australia
    "AEST": "Australia/Sydney", "AEDT": "Australia/Sydney",
    "ACST": "Australia/Adelaide", "ACDT": "Australia/Adelaide",
    "AWST": "Australia/Perth",
    # UTC
    "UTC": "UTC",
}


@dataclass(frozen=True)
class TimezoneInfo:
    """A zone at one instant (the seed's ``TimezoneInfo``)."""

    #: IANA name.
    name: str
    #: Offset from UTC in seconds (east positive).
    utc_offset_seconds: int
    #: Offset from UTC in hours (may be fractional).
    utc_offset_hours: float
    #: Whether daylight saving time is in effect.
    is_dst: bool
    #: The instant, in this zone.
    current_time: datetime
    #: Abbreviation in effect (``"EST"``, ``"CEST"``, ``"+09"``...).
    abbreviation: str

    def __str__(self) -> str:
        return (f"{self.name} (UTC{self.utc_offset_hours:+.1f}h, {self.abbreviation}, "
                f"DST: {'Yes' if self.is_dst else 'No'}): "
                f"{self.current_time.strftime('%Y-%m-%d %H:%M:%S')} {self.abbreviation}")


def _now(now: datetime | None, field: str = "now") -> datetime:
    return datetime.now(UTC) if now is None else require_aware(now, field)


@lru_cache(maxsize=1)
def _all_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones() | {"UTC"}))


class TimezoneUtils:
    """Time zone helpers for schedules (all static methods)."""

    @staticmethod
    def detect_system_timezone() -> str:
        """The IANA name of this machine's zone; ``"UTC"`` when it cannot be told.

        Looks at the ``TZ`` environment variable, then ``/etc/timezone`` (Debian), then the
        target of the ``/etc/localtime`` symlink (``.../zoneinfo/Europe/Paris``).
        """
        candidates = []
        tz_env = os.environ.get("TZ")
        if tz_env:
            candidates.append(tz_env.lstrip(":"))
        try:
            with open("/etc/timezone", encoding="utf-8") as handle:
                candidates.append(handle.read().strip())
        except OSError:
            pass
        try:
            target = os.path.realpath("/etc/localtime")
            if "zoneinfo/" in target:
                candidates.append(target.split("zoneinfo/", 1)[1])
        except OSError:  # pragma: no cover - realpath rarely fails
            pass
        for name in candidates:
            if TimezoneUtils.is_valid_timezone(name):
                return name
        return "UTC"

    @staticmethod
    def is_valid_timezone(timezone: str) -> bool:
        """Whether ``timezone`` is a known IANA zone name."""
        if not isinstance(timezone, str):
            return False
        try:
            zone_key(timezone)
        except InvalidSchedule:
            return False
        return True

    @staticmethod
    def list_all_timezones() -> list[str]:
        """Every IANA zone name known to :mod:`zoneinfo` (with ``tzdata``: about 600), sorted."""
        return list(_all_zones())

    @staticmethod
    def search_timezones(pattern: str) -> list[str]:
        """Zone names containing ``pattern``, case-insensitively, sorted."""
        needle = pattern.lower()
        return [name for name in _all_zones() if needle in name.lower()]

    @staticmethod
    def format_in_timezone(when: datetime, timezone: str) -> str:
        """``"YYYY-MM-DD HH:MM:SS Zone/Name"`` for the aware ``when`` in ``timezone``."""
        local = require_aware(when, "when").astimezone(get_zone(zone_key(timezone)))
        return f"{local.strftime('%Y-%m-%d %H:%M:%S')} {zone_key(timezone)}"

    @staticmethod
    def current_time_in_zones(timezones: Iterable[str],
                              now: datetime | None = None) -> dict[str, datetime]:
        """``{zone: now in that zone}`` for each zone.

        :raises InvalidSchedule: an unknown zone.
        """
        instant = _now(now)
        return {name: instant.astimezone(get_zone(zone_key(name))) for name in timezones}

    @staticmethod
    def get_utc_offset(timezone: str, at: datetime | None = None) -> int:
        """The zone's offset from UTC in seconds (east positive) at ``at`` (default: now)."""
        local = _now(at, "at").astimezone(get_zone(zone_key(timezone)))
        return int(local.utcoffset().total_seconds())  # type: ignore[union-attr]

    @staticmethod
    def is_dst_active(timezone: str, at: datetime | None = None) -> bool:
        """Whether daylight saving time is in effect in ``timezone`` at ``at`` (default: now).

        DST is in effect when the offset is larger than the zone's standard offset, taken as
        the smaller of its offsets on January 1 and July 1 of that year (so zones whose
        data calls winter time "negative DST", like Europe/Dublin, read as expected).
        """
        zone = get_zone(zone_key(timezone))
        local = _now(at, "at").astimezone(zone)
        year = local.year
        standard = min(datetime(year, 1, 1, tzinfo=zone).utcoffset(),  # type: ignore[type-var]
                       datetime(year, 7, 1, tzinfo=zone).utcoffset())
        return local.utcoffset() > standard  # type: ignore[operator]

    @staticmethod
    def get_timezone_info(timezone: str, at: datetime | None = None) -> TimezoneInfo:
        """Offset, DST status, abbreviation and local time of ``timezone`` at ``at``."""
        name = zone_key(timezone)
        instant = _now(at, "at")
        local = instant.astimezone(get_zone(name))
        offset = int(local.utcoffset().total_seconds())  # type: ignore[union-attr]
        return TimezoneInfo(
            name=name,
            utc_offset_seconds=offset,
            utc_offset_hours=offset / 3600,
            is_dst=TimezoneUtils.is_dst_active(name, instant),
            current_time=local,
            abbreviation=local.tzname() or name,
        )

    @staticmethod
    def convert_between_timezones(when: datetime, from_tz: str, to_tz: str) -> datetime:
        """``when`` expressed in ``to_tz``.

        A naive ``when`` is a wall time in ``from_tz`` (a repeated wall time is read as its
        first occurrence); an aware one is the instant it denotes (``from_tz`` is then only
        validated).

        :raises InvalidSchedule: an unknown zone (naming ``timezone``).
        """
        source = get_zone(zone_key(from_tz))
        target = get_zone(zone_key(to_tz))
        if not isinstance(when, datetime):
            raise InvalidSchedule(f"when {when!r} is not a datetime", "when")
        if when.tzinfo is None:
            when = when.replace(tzinfo=source, fold=0)
        return when.astimezone(target)

    @staticmethod
    def get_common_timezone_abbreviations() -> dict[str, str]:
        """A copy of :data:`COMMON_ABBREVIATIONS` (``"EST"`` -> ``"America/New_York"``...)."""
        return dict(COMMON_ABBREVIATIONS)

    @staticmethod
    def time_until_next_occurrence(hour: int, minute: int, timezone: str,
                                   now: datetime | None = None) -> timedelta:
        """Time from ``now`` to the next ``hour:minute`` wall time in ``timezone``.

        Strictly in the future (at exactly 09:00, the next 09:00 is tomorrow's). On a DST
        day a skipped time counts as the first instant after the gap and a repeated one as
        its first occurrence, like a crontab.

        :raises InvalidSchedule: hour or minute out of range, or an unknown zone.
        """
        for field, value, high in (("hour", hour, 23), ("minute", minute, 59)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise InvalidSchedule(f"{field} {value!r} is out of range 0-{high}", field)
        instant = _now(now)
        following = crontab(minute, hour, timezone=zone_key(timezone)).next_after(instant)
        if following is None:  # pragma: no cover - only past datetime.max
            raise InvalidSchedule(f"now {instant.isoformat()} has no next occurrence", "now")
        return following - instant
