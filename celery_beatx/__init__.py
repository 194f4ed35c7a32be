"""celery-beatx: a SQL-backed Celery beat scheduler with an admin API.

Start beat with ``celery -A proj beat -S celery_beatx.Scheduler``; change schedules while it
runs with :class:`BeatAdmin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .alerts import Alert, AlertConfig, on_alert
from .conflicts import Conflict
from .errors import (
    BeatxError,
    DependencyCycle,
    InvalidSchedule,
    LockNotHeld,
    SchemaOutOfDate,
    TaskExists,
    TaskNotFound,
    VersionNotFound,
    WriteConflict,
)
from .policies import RetryPolicy
from .schedules import (
    BaseSchedule,
    Calendar,
    Schedule,
    ScheduleBuilder,
    ScheduleTemplates,
    all_of,
    any_of,
    calendar_filtered,
    cron,
    crontab,
    custom,
    every,
    from_celery,
    once,
    register_schedule,
    schedule_from_dict,
    solar,
)
from .timezones import TimezoneUtils

if TYPE_CHECKING:
    from .admin import BeatAdmin, HealthReport
    from .definitions import TaskInfo
    from .scheduler import Scheduler
    from .tracking import TrackedTask, track

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertConfig",
    "BaseSchedule",
    "BeatAdmin",
    "BeatxError",
    "Calendar",
    "Conflict",
    "HealthReport",
    "ScheduleBuilder",
    "ScheduleTemplates",
    "TimezoneUtils",
    "all_of",
    "any_of",
    "calendar_filtered",
    "custom",
    "once",
    "register_schedule",
    "DependencyCycle",
    "InvalidSchedule",
    "LockNotHeld",
    "RetryPolicy",
    "Schedule",
    "Scheduler",
    "SchemaOutOfDate",
    "TaskExists",
    "TaskInfo",
    "TaskNotFound",
    "TrackedTask",
    "VersionNotFound",
    "WriteConflict",
    "cron",
    "crontab",
    "every",
    "from_celery",
    "on_alert",
    "schedule_from_dict",
    "solar",
    "track",
]

_LAZY = {
    "BeatAdmin": ("admin", "BeatAdmin"),
    "HealthReport": ("admin", "HealthReport"),
    "TaskInfo": ("definitions", "TaskInfo"),
    "Scheduler": ("scheduler", "Scheduler"),
    "TrackedTask": ("tracking", "TrackedTask"),
    "track": ("tracking", "track"),
}


def __getattr__(name: str) -> Any:
    # Scheduler imports Celery and BeatAdmin imports SQLAlchemy: load them on first use so
    # ``import celery_beatx`` stays light and the schedule math stays import-clean.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
