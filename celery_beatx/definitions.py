"""Task definitions: validation of admin input and the :class:`TaskInfo` view of a task.

Pure: no database, no Celery.  Everything here raises :class:`InvalidSchedule` naming the
field and the value, before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidSchedule
from .policies import RetryPolicy
from .schedules import BaseSchedule, Calendar, calendar_filtered, from_celery, schedule_from_dict

CATCHUP_MODES = ("skip", "once", "all")
OVERLAP_MODES = ("allow", "skip", "buffer_one")
NAME_MAX = 200
#: Upper bound for seconds fields (``expires``, ``jitter``): ten years.
MAX_SECONDS = 10 * 365 * 86400.0

#: Definition fields with their defaults, in the order of ``BeatAdmin.add``.
DEFAULTS: dict[str, Any] = {
    "args": [],
    "kwargs": {},
    "queue": None,
    "priority": None,
    "expires": None,
    "headers": {},
    "options": {},
    "group": None,
    "tags": [],
    "depends_on": [],
    "retry": None,
    "alerts": None,
    "calendar": None,
    "jitter": 0.0,
    "catchup": "once",
    "catchup_limit": 100,
    "overlap": "allow",
    "description": "",
}
DEFINITION_FIELDS = ("task", "schedule", *DEFAULTS)
UPDATABLE_FIELDS = (*DEFINITION_FIELDS, "enabled")


def coerce_schedule(value: Any, timezone: str | None = None) -> BaseSchedule:
    """Turn anything a user may pass as a schedule into one of ours.

    Accepts our schedule objects, their ``to_dict()`` form, Celery's ``schedule``,
    ``crontab`` and ``solar`` objects, a number of seconds or a ``timedelta``.  A Celery
    crontab takes ``timezone`` (the app's), as Celery itself does.
    """
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, Mapping):
        return schedule_from_dict(dict(value))
    return from_celery(value, app_timezone=timezone)


def _name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSchedule(f"{field_name} {value!r} must be a non-empty string", field_name)
    if len(value) > NAME_MAX:
        raise InvalidSchedule(
            f"{field_name} {value[:40]!r}... is longer than {NAME_MAX} characters", field_name)
    if "\x00" in value:
        raise InvalidSchedule(f"{field_name} {value!r} contains a NUL character", field_name)
    return value


def _optional_name(value: Any, field_name: str) -> str | None:
    return None if value is None else _name(value, field_name)


def _json(value: Any, field_name: str) -> Any:
    try:
        # NaN and infinities are not JSON, and PostgreSQL and MariaDB refuse them.
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchedule(f"{field_name} {value!r} is not JSON-serialisable: {exc}",
                              field_name) from None
    return value


def _number(value: Any, field_name: str, *, minimum: float = 0.0, strict: bool = False,
            maximum: float = MAX_SECONDS) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSchedule(f"{field_name} {value!r} is not a number", field_name)
    if not math.isfinite(value) or value > maximum:
        raise InvalidSchedule(f"{field_name} {value!r} must be a finite number <= {maximum:g}",
                              field_name)
    if value < minimum or (strict and value <= minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise InvalidSchedule(f"{field_name} {value!r} must be {bound}", field_name)
    return float(value)


def _as_dict(value: Any, field_name: str) -> dict[str, Any] | None:
    """Policies (retry, alerts, calendar) are stored as their dict form."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise InvalidSchedule(f"{field_name} {value!r} is not a mapping", field_name)
    return _json(dict(value), field_name)


def _str_list(value: Any, field_name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidSchedule(f"{field_name} {value!r} must be a list of strings", field_name)
    items = [_name(v, field_name) for v in value]
    return list(dict.fromkeys(items))


def validate_fields(fields: Mapping[str, Any], timezone: str | None = None) -> dict[str, Any]:
    """Validate and normalise definition fields; returns their stored form.

    Only the keys present in ``fields`` are returned, so this serves ``add`` (after filling
    defaults) and partial ``update`` alike.
    """
    unknown = set(fields) - set(UPDATABLE_FIELDS) - {"name"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidSchedule(f"field {name!r} is unknown", name)
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("name", "task"):
            out[key] = _name(value, key)
        elif key == "schedule":
            out[key] = coerce_schedule(value, timezone).to_dict()
        elif key == "args":
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise InvalidSchedule(f"args {value!r} must be a list or tuple", "args")
            out[key] = _json(list(value), key)
        elif key in ("kwargs", "headers", "options"):
            value = {} if value is None else value
            if not isinstance(value, Mapping):
                raise InvalidSchedule(f"{key} {value!r} must be a mapping", key)
            out[key] = _json(dict(value), key)
        elif key == "queue" or key == "group":
            out[key] = _optional_name(value, key)
        elif key == "priority":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= 255):
                raise InvalidSchedule(f"priority {value!r} is out of range 0-255", key)
            out[key] = value
        elif key == "expires":
            if isinstance(value, datetime):
                raise InvalidSchedule(
                    f"expires {value.isoformat()!r} must be seconds after the send, "
                    "not a datetime", key)
            out[key] = None if value is None else _number(value, key, strict=True)
        elif key in ("tags", "depends_on"):
            out[key] = _str_list(value, key)
        elif key == "calendar":
            if value is not None and not isinstance(value, Calendar):
                value = Calendar.from_dict(_as_dict(value, key) or {})
            out[key] = value.to_dict() if value is not None else None
        elif key == "retry":
            out[key] = None if value is None else RetryPolicy.coerce(value).to_dict()
        elif key == "alerts":
            out[key] = _as_dict(value, key)
        elif key == "jitter":
            out[key] = _number(value, key)
        elif key == "catchup":
            if value not in CATCHUP_MODES:
                raise InvalidSchedule(f"catchup {value!r} is not one of {CATCHUP_MODES}", key)
            out[key] = value
        elif key == "catchup_limit":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidSchedule(f"catchup_limit {value!r} must be an integer >= 1", key)
            out[key] = value
        elif key == "overlap":
            if value not in OVERLAP_MODES:
                raise InvalidSchedule(f"overlap {value!r} is not one of {OVERLAP_MODES}", key)
            out[key] = value
        elif key == "description":
            if not isinstance(value, str):
                raise InvalidSchedule(f"description {value!r} must be a string", key)
            out[key] = value
        elif key == "enabled":
            if not isinstance(value, bool):
                raise InvalidSchedule(f"enabled {value!r} must be True or False", key)
            out[key] = value
    if "name" in out and out["name"] in out.get("depends_on", ()):
        raise InvalidSchedule(f"depends_on: task {out['name']!r} cannot depend on itself",
                              "depends_on")
    return out


def effective_schedule(schedule: BaseSchedule,
                       calendar: Mapping[str, Any] | None) -> BaseSchedule:
    """The schedule beat follows: ``schedule`` limited by the task's calendar, if any."""
    if not calendar:
        return schedule
    return calendar_filtered(schedule, Calendar.from_dict(dict(calendar)))


@dataclass(frozen=True)
class TaskInfo:
    """A task's definition and scheduling state, as returned by :class:`BeatAdmin`."""

    name: str
    task: str
    schedule: BaseSchedule | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    expires: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    retry: dict[str, Any] | None = None
    alerts: dict[str, Any] | None = None
    calendar: dict[str, Any] | None = None
    jitter: float = 0.0
    catchup: str = "once"
    catchup_limit: int = 100
    overlap: str = "allow"
    description: str = ""
    source: str = "api"
    version: int = 1
    last_run_at: datetime | None = None
    total_run_count: int = 0
    next_run_at: datetime | None = None
    invalid_reason: str | None = None
    #: The change revision of the last definition change (the change feed's order).
    revision: int = 0
    schedule_dict: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def effective_schedule(self) -> BaseSchedule | None:
        """The schedule limited by the task's calendar: what beat actually follows."""
        if self.schedule is None:
            return None
        return effective_schedule(self.schedule, self.calendar)

    def definition(self) -> dict[str, Any]:
        """The definition fields in their stored (JSON) form."""
        out = {key: getattr(self, key) for key in DEFINITION_FIELDS}
        out["schedule"] = dict(self.schedule_dict)
        return out
