"""Stored alerts."""

from __future__ import annotations

from datetime import datetime

from ..alerts import LEVELS, Alert
from ..errors import InvalidSchedule
from ..schedules.base import require_aware
from ._base import AdminBase


class AlertsMixin(AdminBase):
    """Alert queries of :class:`~celery_beatx.BeatAdmin`."""

    def alerts(self, level: str | None = None, since: datetime | None = None,
               limit: int = 1000) -> list[Alert]:
        """Stored alerts, newest first; ``level`` is the minimum level to include."""
        levels = None
        if level is not None:
            if level not in LEVELS:
                raise InvalidSchedule(f"level {level!r} is not one of {LEVELS}", "level")
            levels = LEVELS[LEVELS.index(level):]
        since = require_aware(since, "since") if since is not None else None
        with self._tx(readonly=True) as session:
            return [Alert(a.level, a.kind, a.task_name, a.message, a.at, dict(a.data or {}))
                    for a in self.repo.alerts(session, levels=levels, since=since,
                                              limit=limit)]
