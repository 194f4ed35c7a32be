"""Task definitions: validation of admin input and the :class:`TaskInfo` view of a task.

Pure: no database, no Celery.  Everything here raises :class:`InvalidSchedule` naming the
field and the value, before anything is written.  How each value is checked and stored is
in :mod:`celery_beatx.values`.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .alerts import AlertConfig
from .errors import InvalidSchedule
from .policies import MAX_CATCHUP, RetryPolicy
from .schedules import BaseSchedule, Calendar, calendar_filtered, from_celery, schedule_from_dict
from .schedules.base import schedule_from_json
from .values import (
    DESCRIPTION_MAX,
    JITTER_MAX,
    MAX_SECONDS,
    check_expires,
    check_headers,
    check_options,
    encode_arguments,
    expires_tag,
    number,
    plain_json,
    queue_routing,
    to_stored,
)

__all__ = ["CATCHUP_MODES", "DEFAULTS", "DEFINITION_FIELDS", "MAX_SECONDS", "OVERLAP_MODES",
           "TaskInfo", "UPDATABLE_FIELDS", "check_source", "coerce_schedule",
           "config_entry_fields", "effective_schedule", "validate_fields"]

logger = logging.getLogger("celery_beatx.definitions")

CATCHUP_MODES = ("skip", "once", "all")
OVERLAP_MODES = ("allow", "skip", "buffer_one")
NAME_MAX = 200
#: The largest ``catchup_limit`` (beat never looks at more missed occurrences at once).
CATCHUP_LIMIT_MAX = MAX_CATCHUP

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
        key = _json_key(value)
        if key is None:
            # Not plain JSON (a tuple, a key that is not a string, NaN...): validated as it
            # is, so schedule_from_dict refuses what JSON would have quietly converted.
            return schedule_from_dict(dict(value))
        return schedule_from_json(key)  # an import parses each distinct schedule once
    return from_celery(value, app_timezone=timezone)


def _json_key(value: Mapping[str, Any]) -> str | None:
    """``value``'s JSON text with sorted keys, or ``None`` when JSON would change it."""
    try:
        key = json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return key if json.loads(key) == value else None


def stored_schedule(value: Any, timezone: str | None = None) -> dict[str, Any]:
    """The stored (JSON) form of a schedule given as anything :func:`coerce_schedule`
    takes.  A schedule given as its dict form (an import) is brought to its stored form
    once per distinct dict; each call gets a dict of its own."""
    if isinstance(value, Mapping):
        key = _json_key(value)
        if key is not None:
            return json.loads(_stored_schedule_text(key))  # type: ignore[no-any-return]
    return plain_json(coerce_schedule(value, timezone).to_dict(), "schedule")


@functools.lru_cache(maxsize=4096)
def _stored_schedule_text(key: str) -> str:
    return json.dumps(plain_json(schedule_from_json(key).to_dict(), "schedule"))


def _name(value: Any, field_name: str) -> str:
    """A name (of a task, group, tag, queue...): compared byte for byte on every database,
    so surrounding whitespace, which no one sees in a listing, is refused."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidSchedule(f"{field_name} {value!r} must be a non-empty string", field_name)
    if len(value) > NAME_MAX:
        raise InvalidSchedule(
            f"{field_name} {value[:40]!r}... is longer than {NAME_MAX} characters", field_name)
    if "\x00" in value:
        raise InvalidSchedule(f"{field_name} {value!r} contains a NUL character", field_name)
    if value != value.strip():
        raise InvalidSchedule(
            f"{field_name} {value!r} starts or ends with whitespace", field_name)
    return value


def _optional_name(value: Any, field_name: str) -> str | None:
    return None if value is None else _name(value, field_name)


#: The longest ``source`` (the column is 16 characters).
SOURCE_MAX = 16


def check_source(value: Any) -> str:
    """Validate where a task comes from (``api``, ``config``, ``import``...)."""
    if not isinstance(value, str) or not value or len(value) > SOURCE_MAX \
            or value != value.strip():
        raise InvalidSchedule(f"source {value!r} must be a name of 1-{SOURCE_MAX} "
                              "characters", "source")
    return value


def _as_dict(value: Any, field_name: str) -> dict[str, Any] | None:
    """Policies (retry, alerts, calendar) are stored as their dict form."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise InvalidSchedule(f"{field_name} {value!r} is not a mapping", field_name)
    return plain_json(dict(value), field_name)  # type: ignore[no-any-return]


def _str_list(value: Any, field_name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise InvalidSchedule(f"{field_name} {value!r} must be a list of strings", field_name)
    items = [_name(v, field_name) for v in value]
    return plain_json(list(dict.fromkeys(items)), field_name)  # type: ignore[no-any-return]


def _int(value: Any, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSchedule(f"{field_name} {value!r} must be an integer from {low} to "
                              f"{high}", field_name)
    return value


def _args(value: Any) -> Any:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidSchedule(f"args {value!r:.60} must be a list or tuple", "args")
    return encode_arguments(list(value), "args")


def _kwargs(value: Any) -> Any:
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise InvalidSchedule(f"kwargs {value!r:.60} must be a mapping", "kwargs")
    for key in value:
        if not isinstance(key, str):
            raise InvalidSchedule(f"kwargs key {key!r} is not a string (keyword arguments "
                                  "are named by strings)", "kwargs")
    return encode_arguments(dict(value), "kwargs")


def _calendar(value: Any, key: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Calendar):
        value = Calendar.from_dict(_as_dict(value, key) or {})
    return plain_json(value.to_dict(), key)  # type: ignore[no-any-return]


def _choice(modes: tuple[str, ...]) -> Any:
    def check(value: Any, key: str) -> str:
        if value not in modes:
            raise InvalidSchedule(f"{key} {value!r} is not one of {modes}", key)
        return value  # type: ignore[no-any-return]
    return check


def _description(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidSchedule(f"description {value!r:.60} must be a string", key)
    if len(value) > DESCRIPTION_MAX:
        raise InvalidSchedule(f"description {value[:40]!r}... is longer than "
                              f"{DESCRIPTION_MAX} characters", key)
    if "\x00" in value:
        raise InvalidSchedule(f"description {value!r:.60} contains a NUL character", key)
    return value


def _enabled(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidSchedule(f"enabled {value!r} must be True or False", key)
    return value


#: How each field (other than ``queue``, ``schedule`` and ``expires``, which need more
#: than the value) is checked and brought to its stored form: ``check(value, key)``.
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "name": _name,
    "task": _name,
    "args": lambda v, k: _args(v),
    "kwargs": lambda v, k: _kwargs(v),
    "headers": lambda v, k: check_headers(v),
    "options": lambda v, k: check_options(v, UPDATABLE_FIELDS),
    "group": _optional_name,
    "priority": lambda v, k: None if v is None else _int(v, k, 0, 255),
    "tags": _str_list,
    "depends_on": _str_list,
    "calendar": _calendar,
    "retry": lambda v, k: None if v is None else RetryPolicy.coerce(v).to_dict(),
    "alerts": lambda v, k: None if v is None else AlertConfig.coerce(v).to_dict(),
    "jitter": lambda v, k: number(v, k, maximum=JITTER_MAX),
    "catchup": _choice(CATCHUP_MODES),
    "catchup_limit": lambda v, k: _int(v, k, 1, CATCHUP_LIMIT_MAX),
    "overlap": _choice(OVERLAP_MODES),
    "description": _description,
    "enabled": _enabled,
}


def validate_fields(fields: Mapping[str, Any], timezone: str | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
    """Validate and normalise definition fields; returns their stored (JSON) form.

    Only the keys present in ``fields`` are returned, so this serves ``add`` (after filling
    defaults) and partial ``update`` alike.  ``now`` is when the change is made: an absolute
    ``expires`` must be after it (without ``now``, e.g. to compare definitions, that check
    is left out).  A ``kombu.Queue`` given as ``queue`` is stored as its name plus its
    exchange, exchange type and routing key in ``options`` (``options`` is then returned
    too; options given explicitly win).
    """
    unknown = set(fields) - set(UPDATABLE_FIELDS) - {"name"}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidSchedule(f"field {name!r} is unknown", name)
    out: dict[str, Any] = {}
    routing: dict[str, Any] | None = None
    for key, value in fields.items():
        if key == "queue":
            name, carried = queue_routing(value)
            if name is not value:  # a kombu.Queue: its routing goes with it
                routing = carried
            out[key] = _optional_name(name, key)
        elif key == "schedule":
            out[key] = stored_schedule(value, timezone)
        elif key == "expires":
            out[key] = check_expires(value, now)
        else:
            out[key] = _CHECKS[key](value, key)
    if routing is not None:
        given = out.get("options", {})
        out["options"] = check_options(dict(routing, **given), UPDATABLE_FIELDS)
    if "name" in out and out["name"] in out.get("depends_on", ()):
        raise InvalidSchedule(f"depends_on: task {out['name']!r} cannot depend on itself",
                              "depends_on")
    return out


#: Keys of a ``beat_schedule`` entry Celery itself reads (``relative`` belongs to the
#: schedule: the scheduler applies it before the entry's fields are taken).
CELERY_ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options", "relative")
#: ``options`` keys of a ``beat_schedule`` entry that have their own task field.
OWN_OPTION_FIELDS = ("queue", "priority", "expires", "headers")
#: Entry keys Celery ignores that are fields of ours (taken as they are, then validated).
EXTRA_ENTRY_FIELDS = ("description", "group", "tags", "depends_on", "retry", "alerts",
                      "calendar", "jitter", "catchup", "catchup_limit", "overlap")


def config_entry_fields(entry: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """Map a ``beat_schedule`` entry (Celery's dict form) onto task fields.

    Values are passed on as given, for :func:`validate_fields` to check.  The ``queue``,
    ``priority``, ``expires`` and ``headers`` options become their fields; an extra key
    Celery ignores goes to our field of that name (``description``, ``group``, ``tags``,
    ...) and any other is ignored, with a debug log.
    """
    if not isinstance(entry, Mapping):
        raise InvalidSchedule(f"entry {entry!r} is not a mapping", "entry")
    options = entry.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidSchedule(f"options {options!r} must be a mapping", "options")
    options = dict(options)
    fields: dict[str, Any] = {
        "task": entry.get("task"),
        "schedule": entry.get("schedule"),
        "args": entry.get("args") or (),
        "kwargs": entry.get("kwargs") or {},
    }
    for key in OWN_OPTION_FIELDS:
        if key in options:
            fields[key] = options.pop(key)
    fields["options"] = options
    for key, value in entry.items():
        if key in EXTRA_ENTRY_FIELDS:
            fields[key] = value
        elif key not in CELERY_ENTRY_KEYS:
            logger.debug("beat_schedule entry %r: key %r is not used", name, key)
    return fields


def effective_schedule(schedule: BaseSchedule,
                       calendar: Mapping[str, Any] | None) -> BaseSchedule:
    """The schedule beat follows: ``schedule`` limited by the task's calendar, if any."""
    if not calendar:
        return schedule
    return calendar_filtered(schedule, Calendar.from_dict(dict(calendar)))


@dataclass(frozen=True)
class TaskInfo:
    """A task's definition and scheduling state, as returned by :class:`BeatAdmin`.

    ``args`` and ``kwargs`` hold the values the task is sent with (a ``datetime``,
    ``Decimal`` or ``UUID`` given is one here too); ``expires`` is seconds after each send
    or an absolute time.
    """

    name: str
    task: str
    schedule: BaseSchedule | None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int | None = None
    expires: float | datetime | None = None
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
    #: Why, by whom and since when the task is paused (``BeatAdmin.pause``); ``None``
    #: when it is not.
    paused_reason: str | None = None
    paused_by: str | None = None
    paused_at: datetime | None = None

    @property
    def paused(self) -> bool:
        """Whether beat holds the task back (``pause``) until ``resume``."""
        return self.paused_at is not None

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
        out["args"] = to_stored(self.args)
        out["kwargs"] = to_stored(self.kwargs)
        if isinstance(self.expires, datetime):
            out["expires"] = expires_tag(self.expires)
        return out
