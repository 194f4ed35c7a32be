"""Parsing of cron fields (``*``, ``*/n``, ``a-b``, ``a-b/n``, ``a/n``, ``a,b``, names).

Shared by :class:`~celery_beatx.schedules.crontab.crontab` (Celery's dialect) and
:class:`~celery_beatx.schedules.crontab.cron` (standard 5-field cron). Pure functions only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import InvalidSchedule

_DAY_NAMES = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")

DOW_NAMES: dict[str, int] = {}
for _i, _name in enumerate(_DAY_NAMES):
    DOW_NAMES[_name] = DOW_NAMES[_name[:3]] = _i
MONTH_NAMES: dict[str, int] = {}
for _i, _name in enumerate(_MONTH_NAMES, start=1):
    MONTH_NAMES[_name] = MONTH_NAMES[_name[:3]] = _i

#: Longest length of each month (February counted in leap years).
MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class FieldKind:
    """How one cron field is read: its name, value range and accepted names.

    ``high`` may exceed the real range when an alias wraps around (day of week 7 is Sunday
    in standard cron); ``wrap`` maps such values back.
    """

    name: str
    low: int
    high: int
    names: dict[str, int] | None = None
    wrap: int | None = None

    def normalise_value(self, value: int) -> int:
        """Map an alias value (7 for Sunday) onto the canonical range."""
        return value % self.wrap if self.wrap else value


MINUTE = FieldKind("minute", 0, 59)
HOUR = FieldKind("hour", 0, 23)
DAY_OF_MONTH = FieldKind("day_of_month", 1, 31)
MONTH_OF_YEAR = FieldKind("month_of_year", 1, 12, MONTH_NAMES)
#: Celery's day of week: 0-6, Sunday is 0.
DAY_OF_WEEK = FieldKind("day_of_week", 0, 6, DOW_NAMES)
#: Standard cron's day of week: 0-7, both 0 and 7 are Sunday.
CRON_DAY_OF_WEEK = FieldKind("day_of_week", 0, 7, DOW_NAMES, wrap=7)


def _fail(kind: FieldKind, token: object, whole: object, why: str) -> InvalidSchedule:
    where = "" if str(token) == str(whole) else f" in {str(whole)!r}"
    return InvalidSchedule(f"{kind.name} {str(token)!r} {why}{where}", kind.name)


def _number(kind: FieldKind, token: str, whole: str) -> int:
    if token.isdigit():
        value = int(token)
    elif kind.names is not None and token in kind.names:
        return kind.names[token]
    elif token.startswith("-") and token[1:].isdigit():
        raise _fail(kind, token, whole, "is negative")
    else:
        raise _fail(kind, token, whole, "is not a valid value")
    if not kind.low <= value <= kind.high:
        raise _fail(kind, token, whole, f"is out of range {kind.low}-{kind.high}")
    return value


def _span(kind: FieldKind, low: int, high: int) -> list[int]:
    """Values from ``low`` to ``high``; a reversed range wraps around like Celery's."""
    if low <= high:
        return list(range(low, high + 1))
    return list(range(low, kind.high + 1)) + list(range(kind.low, high + 1))


def _part(kind: FieldKind, part: str, whole: str) -> list[int]:
    base, slash, step_text = part.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise _fail(kind, part, whole, "has an invalid step")
        step = int(step_text)
    if base == "*":
        values = list(range(kind.low, kind.high + 1))
    elif "-" in base[1:]:
        if base.count("-") > 1:
            raise _fail(kind, part, whole, "is not a valid range")
        first, _, last = base.partition("-")
        values = _span(kind, _number(kind, first, whole), _number(kind, last, whole))
    else:
        start = _number(kind, base, whole)
        values = list(range(start, kind.high + 1)) if slash else [start]
    return values[::step]


def parse_field(kind: FieldKind, spec: object) -> tuple[str, frozenset[int]]:
    """Parse one field into ``(normalised text, set of values)``.

    ``spec`` is a string in cron syntax, an int, or an iterable of ints (like Celery).

    :raises InvalidSchedule: the message names the field and the offending value.
    """
    if isinstance(spec, bool):
        raise _fail(kind, spec, spec, "is not a valid value")
    if isinstance(spec, int):
        if not kind.low <= spec <= kind.high:
            raise _fail(kind, spec, spec, f"is out of range {kind.low}-{kind.high}")
        return str(spec), frozenset({kind.normalise_value(spec)})
    if isinstance(spec, str):
        text = "".join(spec.split()).lower()
        if not text:
            raise _fail(kind, spec, spec, "is empty")
        values: set[int] = set()
        for part in text.split(","):
            if not part:
                raise _fail(kind, text, text, "has an empty list item")
            values.update(_part(kind, part, text))
        return text, frozenset(kind.normalise_value(v) for v in values)
    if isinstance(spec, Iterable):
        items = list(spec)
        if not items:
            raise _fail(kind, items, items, "is empty")
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int):
                raise _fail(kind, item, items, "is not an integer")
            if not kind.low <= item <= kind.high:
                raise _fail(kind, item, items, f"is out of range {kind.low}-{kind.high}")
        unique = sorted(set(items))
        return ",".join(map(str, unique)), frozenset(kind.normalise_value(v) for v in unique)
    raise _fail(kind, spec, spec, "is not a string, an integer or a list of integers")
