"""Column types: aware-UTC datetimes, portable JSON, empty values stored as NULL, and the
schedule column's short form of a crontab."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

UTC = timezone.utc


class _TolerantSQLiteDateTime(sqlite.DATETIME):
    """SQLite keeps datetimes as text; a value that is not one is returned as it is
    (the row checks then report that task) instead of failing the whole query."""

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        parse = super().result_processor(dialect, coltype)
        if parse is None:
            return None

        def process(value: Any) -> Any:
            try:
                return parse(value)
            except (TypeError, ValueError):
                return value

        return process


class DateTimeUTC(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; refuses naive input; returns aware UTC.

    SQLite and MariaDB keep no offset, so every value is normalised to UTC on the way in
    and tagged as UTC on the way out.  Microseconds are kept (``fsp=6`` on MariaDB).
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_TolerantSQLiteDateTime())
        if dialect.name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()!r} cannot be stored")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            return value  # an undecodable SQLite value, reported by the row checks
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)



class EmptyAsNull(TypeDecorator[Any]):
    """JSON whose empty value (``[]``, ``{}`` or ``None``, per column) is stored as SQL
    ``NULL`` and read back as that value: most tasks leave most JSON fields empty, and
    ``NULL`` takes no bytes in a row.  A JSON ``null`` or empty value written by an older
    release reads the same."""

    impl = JSON
    cache_ok = True

    def __init__(self, empty: type[list[Any]] | type[dict[str, Any]] | None = None) -> None:
        super().__init__(none_as_null=True)
        self.empty = empty

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or (not value and type(value) is self.empty):
            return None
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return self.empty() if self.empty is not None else None
        return value


#: A crontab's fields that default to ``"*"``: its stored form leaves those out.
CRONTAB_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


def _each_crontab(value: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``value`` with ``change`` applied to every crontab in it (also inside a composite or
    calendar schedule); ``value`` itself is never changed."""
    if not isinstance(value, dict):
        return value
    if value.get("type") == "crontab":
        return change(value)
    inner = value.get("schedule")
    members = value.get("schedules")
    if not isinstance(inner, dict) and not isinstance(members, list):
        return value
    out = dict(value)
    if isinstance(inner, dict):
        out["schedule"] = _each_crontab(inner, change)
    if isinstance(members, list):
        out["schedules"] = [_each_crontab(m, change) for m in members]
    return out


def _without_stars(crontab: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in crontab.items() if not (k in CRONTAB_FIELDS and v == "*")}


def _with_stars(crontab: dict[str, Any]) -> dict[str, Any]:
    if all(k in crontab for k in CRONTAB_FIELDS):
        return crontab
    out = {"type": crontab["type"]}
    out.update((k, crontab.get(k, "*")) for k in CRONTAB_FIELDS)
    out.update((k, v) for k, v in crontab.items() if k not in out)
    return out


def compact_schedule(value: Any) -> Any:
    """A schedule's JSON form as stored: a crontab (also inside a composite or calendar
    schedule) without the fields that are ``"*"`` (half of a daily crontab's bytes).
    Anything else is returned as it is; ``value`` is never changed."""
    return _each_crontab(value, _without_stars)


def expand_schedule(value: Any) -> Any:
    """The inverse of :func:`compact_schedule`: every crontab with its five fields, as
    ``crontab.to_dict()`` gives them (a stored form written before it reads the same)."""
    return _each_crontab(value, _with_stars)


class ScheduleJSON(TypeDecorator[Any]):
    """The schedule column: JSON stored in :func:`compact_schedule`'s form and read back in
    :func:`expand_schedule`'s, so the rest of the code sees every crontab field."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return compact_schedule(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return expand_schedule(value)


class EmptyTextAsNull(TypeDecorator[str]):
    """Text whose empty value is stored as SQL ``NULL`` and read back as ``""``."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value or None

    def process_result_value(self, value: str | None, dialect: Dialect) -> str:
        return "" if value is None else value


class Undecodable:
    """A stored JSON value that could not be decoded (written by hand, truncated...).

    Returned instead of raising, so that one bad row is that task's problem only.
    """

    __slots__ = ("raw", "reason")

    def __init__(self, raw: Any, reason: str) -> None:
        self.raw = raw
        self.reason = reason

    def __repr__(self) -> str:
        return f"Undecodable({self.raw!r:.60})"


def json_dumps(value: Any) -> str:
    """``json.dumps`` for JSON columns, without its cost for the empty lists and mappings
    most tasks hold (a bulk insert writes ten JSON columns per row), and without the
    spaces after ``,`` and ``:`` (a crontab's stored form is 14 bytes shorter; the
    databases keep JSON text as written)."""
    if not value and (type(value) is list or type(value) is dict):
        return "[]" if type(value) is list else "{}"
    return json.dumps(value, separators=(",", ":"))


def tolerant_json_loads(raw: str | bytes) -> Any:
    """``json.loads`` for column values: a value that is not JSON becomes :class:`Undecodable`."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as exc:
        return Undecodable(raw, f"stored value {raw!r:.40} is not valid JSON ({exc})")
