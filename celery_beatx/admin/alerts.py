"""Stored alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..alerts import LEVELS, Alert
from ..errors import InvalidSchedule
from ..schedules.base import require_aware
from ._base import AdminBase


def alert_of(row: Any) -> Alert:
    """The public value of a ``beatx_alerts`` row."""
    return Alert(row.level, row.kind, row.task_name, row.message, row.at, dict(row.data or {}),
                 row.id, row.resolved_at)


class AlertsMixin(AdminBase):
    """Alert queries of :class:`~celery_beatx.BeatAdmin`."""

    def alerts(self, level: str | None = None, since: datetime | None = None,
               task: str | None = None, limit: int = 1000) -> list[Alert]:
        """Stored alerts, newest first.

        :param level: the minimum level to include (``info``, ``warning``, ``critical``).
        :param since: only alerts raised at or after this aware time.
        :param task: only the alerts of this task.
        :param limit: at most this many.
        """
        levels = None
        if level is not None:
            if level not in LEVELS:
                raise InvalidSchedule(f"level {level!r} is not one of {LEVELS}", "level")
            levels = LEVELS[LEVELS.index(level):]
        since = require_aware(since, "since") if since is not None else None
        if task is not None and not isinstance(task, str):
            raise InvalidSchedule(f"task {task!r} must be a task name", "task")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidSchedule(f"limit {limit!r} must be an integer >= 1", "limit")
        with self._tx(readonly=True) as session:
            return [alert_of(a) for a in self.repo.alerts(session, levels=levels, since=since,
                                                          task=task, limit=limit)]
