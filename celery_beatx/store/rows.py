"""Stored rows -> public values: parsed schedules and :class:`~celery_beatx.TaskInfo`.

A row can hold anything a person or another program wrote into the database.  Nothing here
raises on a bad row: a value that cannot be decoded or has the wrong shape becomes that task's
``invalid_reason`` (beat skips the task and raises an alert), and listing, exporting and the
change feed go on.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..definitions import CATCHUP_MODES, DEFAULTS, DEFINITION_FIELDS, OVERLAP_MODES, TaskInfo
from ..schedules import BaseSchedule
from ..schedules.base import schedule_from_json
from ..schedules.memory import is_in_memory
from ..values import decode, decode_expires, expires_tag
from .models import TASK_COLUMNS, stored_expires
from .types import Undecodable, expand_schedule, tolerant_json_loads

Loaded = tuple[BaseSchedule | None, str | None]


def load_schedule(data: Any) -> Loaded:
    """Load a stored schedule; on failure return ``(None, reason)`` instead of raising.

    Schedules are immutable, so equal stored forms share one parsed object: beat start-up
    with thousands of tasks parses each distinct schedule once.
    """
    if isinstance(data, Undecodable):
        return None, f"schedule: {data.reason}"
    if not isinstance(data, Mapping):
        return None, f"schedule: stored value {data!r:.80} is not an object"
    try:
        key = json.dumps(data, sort_keys=True)
    except (TypeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return _load_schedule_cached(key)


def load_schedule_text(raw: Any) -> tuple[Any, Loaded, bool]:
    """A schedule column read as text: ``(its JSON value, the loaded schedule, whether it
    describes an in-memory Celery schedule)``, parsed once per distinct text (beat's
    start-up load reads thousands of equal schedules).  The JSON value is shared between
    callers: read it, never change it."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("utf-8", "replace")
    if not isinstance(raw, str):  # a driver that decoded it anyway
        data = expand_schedule(raw)
        return data, load_schedule(data), is_in_memory(data)
    return _load_text_cached(raw)


@functools.lru_cache(maxsize=4096)
def _load_text_cached(raw: str) -> tuple[Any, Loaded, bool]:
    data = expand_schedule(tolerant_json_loads(raw))
    return data, load_schedule(data), is_in_memory(data)


@functools.lru_cache(maxsize=4096)
def _load_schedule_cached(key: str) -> Loaded:
    try:
        return schedule_from_json(key), None
    except Exception as exc:  # a broken row must never stop a listing or beat
        return None, f"{type(exc).__name__}: {exc}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _str_keys(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


#: What a stored definition field must look like to be used (the row's shape, not the full
#: validation admin input gets: that happened when it was written).
_SHAPES: dict[str, Any] = {
    "task": lambda v: isinstance(v, str) and bool(v),
    "args": lambda v: isinstance(v, list),
    "kwargs": _str_keys,
    "queue": lambda v: v is None or isinstance(v, str),
    "priority": lambda v: v is None or _is_int(v),
    "expires": lambda v: v is None or _is_number(v) or isinstance(v, datetime),
    "headers": _str_keys,
    "options": _str_keys,
    "group": lambda v: v is None or isinstance(v, str),
    "tags": _str_list,
    "depends_on": _str_list,
    "retry": lambda v: v is None or _str_keys(v),
    "alerts": lambda v: v is None or _str_keys(v),
    "calendar": lambda v: v is None or _str_keys(v),
    "jitter": lambda v: _is_number(v) and v >= 0,
    "catchup": lambda v: v in CATCHUP_MODES,
    "catchup_limit": lambda v: _is_int(v) and v >= 1,
    "overlap": lambda v: v in OVERLAP_MODES,
    "description": lambda v: isinstance(v, str),
}


#: Where each definition field sits in a plain row of :data:`TASK_COLUMNS` (``expires``:
#: its seconds column; an ``expires_at`` replaces it).
_ROW_DEFINITION = operator.itemgetter(*(
    TASK_COLUMNS.index("expires_seconds" if key == "expires" else key)
    for key in DEFINITION_FIELDS))
_ROW_EXPIRES_AT = TASK_COLUMNS.index("expires_at")


def definition_of(row: Any) -> dict[str, Any]:
    """The stored definition of a task row (what a version snapshot holds): a model object,
    or a plain row of its columns (``Repository.task_rows``)."""
    if getattr(row, "_fields", None) == TASK_COLUMNS:
        # A plain row of every column, read by position: beat reads one per send.
        fields = dict(zip(DEFINITION_FIELDS, _ROW_DEFINITION(row)))
        at = row[_ROW_EXPIRES_AT]
        if at is not None:
            fields["expires"] = expires_tag(at)
        return fields
    expires = stored_expires(row)  # a plain row has no ``expires`` property
    return {key: expires if key == "expires" else getattr(row, key)
            for key in DEFINITION_FIELDS}


#: Stored fields decoded for the send: kombu's tagged objects become their types again.
_DECODERS = {"args": decode, "kwargs": decode, "expires": decode_expires}


def checked_definition(row: Any) -> tuple[dict[str, Any], str | None]:
    """The row's definition, decoded for the send, with broken fields replaced by defaults,
    and what was broken.

    ``args`` and ``kwargs`` come back with their original types (a ``datetime``,
    ``Decimal`` or ``UUID`` stored in kombu's JSON form is one again), ``expires`` as
    seconds or an aware datetime.  ``schedule`` is returned as stored;
    :func:`load_schedule` judges it.
    """
    fields = definition_of(row)
    problems: list[str] = []
    for key, ok in _SHAPES.items():
        value = fields[key]
        decoder = _DECODERS.get(key)
        if decoder is not None and not isinstance(value, Undecodable):
            try:
                value = fields[key] = decoder(value)
            except Exception as exc:  # a row written by hand: that task's problem only
                problems.append(f"{key}: stored value {value!r:.80} cannot be decoded "
                                f"({exc})")
                fields[key] = _default(key)
                continue
        if isinstance(value, Undecodable):
            problems.append(f"{key}: {value.reason}")
        elif not ok(value):
            problems.append(f"{key}: stored value {value!r:.80} has the wrong type")
        else:
            continue
        fields[key] = _default(key)
    return fields, ("; ".join(problems) or None)


def _default(key: str) -> Any:
    if key == "task":
        return "?"
    value = DEFAULTS[key]
    return type(value)(value) if isinstance(value, (list, dict)) else value


def _state(row: Any) -> tuple[dict[str, Any], str | None]:
    problems: list[str] = []
    out: dict[str, Any] = {}
    for key in ("last_run_at", "next_run_at"):
        value = getattr(row, key)
        if value is not None and not isinstance(value, datetime):
            problems.append(f"{key}: stored value {value!r:.40} is not a time")
            value = None
        out[key] = value
    for key, default in (("total_run_count", 0), ("version", 1), ("revision", 0)):
        value = getattr(row, key)
        if not _is_int(value):
            problems.append(f"{key}: stored value {value!r:.40} is not an integer")
            value = default
        out[key] = value
    enabled = row.enabled
    if enabled not in (True, False, 0, 1):
        problems.append(f"enabled: stored value {enabled!r:.40} is not a boolean")
        enabled = False
    out["enabled"] = bool(enabled)
    return out, ("; ".join(problems) or None)


def info_from_row(row: Any, loaded: Loaded | None = None) -> TaskInfo:
    """Build the public :class:`TaskInfo` for a task row (``loaded``: its parsed schedule).

    Never raises: a row that cannot be used carries the reason in ``invalid_reason`` and
    ``schedule=None``.
    """
    schedule, problem = loaded if loaded is not None else load_schedule(row.schedule)
    fields, broken = checked_definition(row)
    state, broken_state = _state(row)
    stored = row.schedule
    fields.pop("schedule")
    reasons = [r for r in (broken, broken_state, problem) if r]
    if broken or broken_state:
        schedule = None
    return TaskInfo(
        name=row.name,
        schedule=schedule,
        schedule_dict=dict(stored) if isinstance(stored, Mapping) else {},
        source=row.source if isinstance(row.source, str) else "?",
        invalid_reason=row.invalid_reason or ("; ".join(reasons) or None),
        **_paused(row),
        **state,
        **fields,
    )


def info_from_written(row: Any, loaded: Loaded) -> TaskInfo:
    """The :class:`TaskInfo` of a task row just written from validated fields (a bulk
    add): only decoded, not checked again, since every value was checked before it was
    written (:func:`info_from_row` checks rows read back)."""
    fields = {key: getattr(row, key) for key in DEFINITION_FIELDS}
    stored = fields.pop("schedule")
    fields["args"] = decode(fields["args"])
    fields["kwargs"] = decode(fields["kwargs"])
    fields["expires"] = decode_expires(fields["expires"])
    schedule, problem = loaded
    return TaskInfo(
        name=row.name, schedule=schedule, schedule_dict=dict(stored), source=row.source,
        invalid_reason=row.invalid_reason or problem, enabled=bool(row.enabled),
        version=row.version, revision=row.revision, last_run_at=row.last_run_at,
        total_run_count=row.total_run_count, next_run_at=row.next_run_at,
        **_paused(row), **fields)


def _paused(row: Any) -> dict[str, Any]:
    """The pause fields of a row (a value of the wrong type reads as absent)."""
    at = row.paused_at if isinstance(row.paused_at, datetime) else None
    reason, by = row.paused_reason, row.paused_by
    return {"paused_at": at,
            "paused_reason": reason if at is not None and isinstance(reason, str) else None,
            "paused_by": by if at is not None and isinstance(by, str) else None}


class SendDefinition:
    """What one send needs of a task row, checked and decoded once and copied out of its
    session (safe to use after the transaction ended, committed or not).

    ``fields``: the definition from :func:`checked_definition`; ``schedule``: the parsed
    schedule when the caller already has it (beat's slot), else ``None`` (parsed on use).
    """

    __slots__ = ("name", "last_run_at", "total_run_count", "fields", "schedule")

    def __init__(self, name: str, last_run_at: Any, total_run_count: Any,
                 fields: dict[str, Any], schedule: Any = None) -> None:
        self.name = name
        self.last_run_at = last_run_at
        self.total_run_count = total_run_count
        self.fields = fields
        self.schedule = schedule


def send_definition(row: Any, schedule: Any = None) -> tuple[SendDefinition, str | None]:
    """The :class:`SendDefinition` of a task row and what is broken in it (``None``: it can
    be sent).  ``schedule``: the row's parsed schedule, if known."""
    fields, problem = checked_definition(row)
    return SendDefinition(row.name, row.last_run_at, row.total_run_count, fields,
                          schedule), problem
