"""Celery entries that beat drives in its own memory, and what the database keeps of them.

A ``beat_schedule`` entry (or one given to Celery's runtime API: ``Scheduler.add``,
``update_from_dict``, ``merge_inplace``, the ``schedule`` setter) is stored as one of our
schedules when one fires at exactly the same times.  When none does, beat keeps the Celery
entry itself in memory and drives it with the schedule object's own ``is_due()``, as Celery
does; the database keeps a description (:class:`~celery_beatx.schedules.memory.
celery_schedule`) plus the task's state and run history.  That is the case for:

- an instance of a subclass of ``celery.schedules.schedule``, ``crontab`` or ``solar``, or of
  any other ``celery.schedules.BaseSchedule`` (it may override ``is_due()`` or
  ``remaining_estimate()``);
- a Celery schedule with a ``nowfun`` of its own (its clock is not beat's);
- a ``relative=True`` interval (``schedule(..., relative=True)`` or the entry key
  ``"relative": True``), which Celery rounds to the interval's resolution;
- an entry whose ``args`` or ``kwargs`` hold a ``celery.beat.BeatLazyFunc``, which Celery
  calls at each send.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import schedules as celery_schedules
from celery.beat import BeatLazyFunc
from celery.schedules import BaseSchedule as CeleryBaseSchedule
from celery.schedules import maybe_schedule
from celery.utils.time import maybe_make_aware

from .definitions import validate_fields
from .errors import InvalidSchedule
from .schedules import BaseSchedule, every
from .schedules.convert import class_path, safe_repr
from .schedules.convert import not_convertible as _not_convertible
from .schedules.crontab import cron, crontab
from .schedules.memory import celery_schedule

__all__ = ["LAZY_REASON", "describe", "memory_fields", "memory_next_runs", "memory_reason",
           "stored_form"]

UTC = timezone.utc
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
LAZY_REASON = "its arguments hold a BeatLazyFunc, called at each send"
#: ``options`` keys of an entry that have their own task field.
OWN_OPTION_FIELDS = ("queue", "priority", "expires", "headers")


def has_lazy(args: Any, kwargs: Any) -> bool:
    """Whether Celery would call something in these arguments at send time."""
    values = list(args or ()) if isinstance(args, (list, tuple)) else []
    if isinstance(kwargs, Mapping):
        values += list(kwargs.values())
    return any(isinstance(v, BeatLazyFunc) for v in values)


def celery_schedule_of(schedule: Any, relative: bool, app: Any, lazy: bool = False) -> Any:
    """The schedule as a Celery entry holds it, when it matters: a number or a timedelta
    becomes a Celery ``schedule`` when ``relative`` (or when the entry is ``lazy``, i.e. held
    in memory anyway); a Celery schedule object is attached to ``app``.  Anything else is
    returned unchanged."""
    if isinstance(schedule, (int, float, timedelta)) and not isinstance(schedule, bool):
        if not relative and not lazy:
            return schedule
        return maybe_schedule(schedule, relative, app=app)
    if isinstance(schedule, CeleryBaseSchedule):
        return maybe_schedule(schedule, relative, app=app)
    return schedule


def not_convertible(schedule: Any) -> str | None:
    """Why a Celery schedule object has no exact equivalent among our schedules."""
    return _not_convertible(schedule, celery_schedules.schedule, celery_schedules.crontab,
                            celery_schedules.solar)


def memory_reason(schedule: Any, args: Any = (), kwargs: Any = None) -> str | None:
    """Why an entry with this schedule and arguments is driven in memory (None: it is not)."""
    if isinstance(schedule, CeleryBaseSchedule):
        why = not_convertible(schedule)
        if why is not None:
            return why
    if has_lazy(args, kwargs):
        return LAZY_REASON
    return None


def describe(schedule: Any, reason: str) -> dict[str, Any]:
    """The stored form of an in-memory schedule (see :class:`celery_schedule`).

    An object address in the ``repr`` (``<proj.Cls object at 0x7f...>``) is left out: it
    differs at every start and would make every start a new version of the task.
    """
    text = _ADDRESS.sub("", safe_repr(schedule))
    return celery_schedule(class_path(schedule), text, reason).to_dict()


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot carry replaced by a readable text."""
    def default(obj: Any) -> Any:
        if isinstance(obj, BeatLazyFunc):
            func = getattr(obj, "_func", None)
            name = getattr(func, "__qualname__", None) or safe_repr(func)
            return f"<BeatLazyFunc {getattr(func, '__module__', '?')}.{name}>"
        if isinstance(obj, (set, frozenset)):
            return sorted(obj, key=repr)
        return safe_repr(obj)

    def clean(obj: Any) -> Any:  # NaN and infinities are not JSON
        if isinstance(obj, float) and not math.isfinite(obj):
            return repr(obj)
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return clean(json.loads(json.dumps(value, default=default)))


def memory_fields(task: Any, reason: str, schedule: Any, args: Any, kwargs: Any,
                  options: Mapping[str, Any] | None, timezone_name: str | None
                  ) -> dict[str, Any]:
    """The descriptive definition stored for an in-memory entry.

    What is sent is the entry in memory; the row shows what it is.  A value the row cannot
    hold as such (a ``BeatLazyFunc``, an object) is stored as text; an option that has its
    own field (``queue``, ``priority``, ``expires``, ``headers``) goes there when it is a
    valid value for it, else it stays in ``options`` as text.
    """
    options = dict(options or {})
    fields: dict[str, Any] = {
        "task": task if isinstance(task, str) and task.strip() else "?",
        "schedule": describe(schedule, reason),
        "args": _jsonable(list(args) if isinstance(args, (list, tuple)) else []),
        "kwargs": _jsonable(dict(kwargs) if isinstance(kwargs, Mapping) else {}),
    }
    for key in OWN_OPTION_FIELDS:
        if key not in options:
            continue
        value = options[key]
        if key == "queue" and not isinstance(value, str) and hasattr(value, "name"):
            value = value.name
        try:
            validate_fields({key: value}, timezone_name)
        except InvalidSchedule:
            continue  # shown in options, as text
        fields[key] = value
        del options[key]
    fields["options"] = _jsonable(options)
    return fields


def stored_form(entry_task: Any, schedule: Any, args: Any, kwargs: Any,
                options: Mapping[str, Any] | None, timezone_name: str | None
                ) -> tuple[dict[str, Any], str | None]:
    """``(fields, reason)``: the task fields of an entry, and why it is held in memory
    (``None``: it is stored as one of our schedules and ``fields`` are the entry's own)."""
    reason = memory_reason(schedule, args, kwargs)
    if reason is not None:
        if not isinstance(schedule, CeleryBaseSchedule):
            # Only a Celery schedule object can be driven in memory (its is_due()).
            kind = "a celery_beatx schedule" if isinstance(schedule, BaseSchedule) else \
                f"{safe_repr(schedule, 80)}"
            raise InvalidSchedule(
                f"schedule {kind} cannot be used with a BeatLazyFunc in args/kwargs: give a "
                "number of seconds, a timedelta or a celery.schedules object", "schedule")
        return memory_fields(entry_task, reason, schedule, args, kwargs, options,
                             timezone_name), reason
    options = dict(options or {})
    fields: dict[str, Any] = {"task": entry_task, "schedule": schedule,
                              "args": args or (), "kwargs": kwargs or {}}
    for key in OWN_OPTION_FIELDS:
        if key in options:
            fields[key] = options.pop(key)
    fields["options"] = options
    return fields, None


def _aware(value: datetime) -> datetime:
    return maybe_make_aware(value).astimezone(UTC)


def memory_next_runs(app: Any, name: str, last_run_at: datetime | None, n: int,
                     start: datetime) -> list[datetime]:
    """Best-effort next ``n`` run times of an in-memory task, from the ``beat_schedule``
    entry of ``app``: each is the schedule's ``remaining_estimate()`` from the previous one
    (the first from the last run, or from ``start`` for a task that never ran).

    :raises InvalidSchedule: ``app`` has no such entry, or its schedule has no
        ``remaining_estimate()`` (only its ``is_due()`` knows).
    """
    config = (app.conf.beat_schedule or {}) if app is not None else {}
    entry = config.get(name)
    if not isinstance(entry, Mapping) or entry.get("schedule") is None:
        raise InvalidSchedule(
            f"task {name!r} is driven by a Celery schedule object held in beat's memory, "
            "and this process's beat_schedule has no such entry", "schedule")
    schedule = maybe_schedule(entry["schedule"], entry.get("relative", False), app=app)
    out: list[datetime] = []
    last = last_run_at or start
    try:
        now = _aware(schedule.now())
        # Ask a copy whose clock stands still, so that ``now + remaining`` is exact.
        # (not copy.copy: Celery's __reduce__ rebuilds with the base class's arguments,
        # which a subclass's constructor may not take)
        probe = object.__new__(type(schedule))
        probe.__dict__.update(vars(schedule))
        probe.nowfun = lambda: now
    except Exception as exc:
        raise InvalidSchedule(f"task {name!r}: {class_path(schedule)}.now() raised "
                              f"{type(exc).__name__}: {exc}", "schedule") from exc
    while len(out) < n:
        try:
            remaining = probe.remaining_estimate(last)
        except NotImplementedError:
            raise InvalidSchedule(
                f"task {name!r}: {class_path(schedule)} has no remaining_estimate(); only its "
                "is_due() in beat knows when it runs next", "schedule") from None
        except Exception as exc:
            raise InvalidSchedule(
                f"task {name!r}: {class_path(schedule)}.remaining_estimate() raised "
                f"{type(exc).__name__}: {exc}", "schedule") from exc
        nxt = max(now + remaining, start) if not out else now + remaining
        if out and nxt <= out[-1]:
            break  # a schedule that does not move forward from its own runs
        out.append(nxt)
        last = nxt
    return out


def celery_equivalent(schedule: BaseSchedule | None, app: Any = None,
                      app_timezone: str | None = None) -> Any:
    """The Celery schedule object that fires at the same times as ``schedule``, or ``None``
    when Celery has none: a plain interval becomes ``celery.schedules.schedule``, a crontab
    in the app's zone ``celery.schedules.crontab``.  Given to code that reads
    ``entry.schedule`` in ``apply_entry`` (monitoring integrations); beat itself never
    uses it."""
    try:
        if type(schedule) is every and schedule.anchor is None:
            return celery_schedules.schedule(timedelta(seconds=schedule.seconds), app=app)
        if type(schedule) in (crontab, cron):
            data = schedule.to_dict()
            if app_timezone is not None and data["timezone"] != app_timezone:
                return None  # Celery's crontab runs in the app's zone only
            if type(schedule) is cron:
                minute, hour, dom, month, dow = data["expr"].split(" ")
                if not (dom.startswith("*") or dow.startswith("*")):
                    return None  # cron's "either day" rule; Celery's crontab needs both
                data = {"minute": minute, "hour": hour, "day_of_month": dom,
                        "month_of_year": month, "day_of_week": dow}
            return celery_schedules.crontab(minute=data["minute"], hour=data["hour"],
                                  day_of_week=data["day_of_week"],
                                  day_of_month=data["day_of_month"],
                                  month_of_year=data["month_of_year"], app=app)
    except Exception:  # a form Celery's parser does not take: there is no equivalent
        return None
    return None
