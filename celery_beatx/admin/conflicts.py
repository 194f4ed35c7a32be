"""``BeatAdmin.conflicts()``: tasks that fire close together (see
:mod:`celery_beatx.conflicts`)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from ..conflicts import Conflict, FireSource, find_conflicts
from ..definitions import effective_schedule
from ..errors import InvalidSchedule
from ..schedules.base import require_aware
from ..store.rows import load_schedule
from ._base import AdminBase

#: The longest horizon ``conflicts()`` looks over.
MAX_HORIZON = timedelta(days=366)


class ConflictsMixin(AdminBase):
    """``conflicts()`` of :class:`~celery_beatx.BeatAdmin`."""

    def conflicts(self, window: float = 60, horizon: timedelta = timedelta(days=1),
                  now: datetime | None = None, high_severity: bool = False,
                  limit: int | None = None) -> list[Conflict]:
        """Pairs of different enabled tasks whose fire times within ``horizon`` (from
        ``now``) fall within ``window`` seconds of each other, most severe first.

        Paused, disabled and invalid tasks are left out; fire times include each task's
        jitter.  ``high_severity=True`` keeps the ``high`` ones; ``limit`` caps the list.
        """
        if isinstance(window, bool) or not isinstance(window, (int, float)) \
                or not 0 <= window <= 86400:
            raise InvalidSchedule(f"window {window!r} must be a number of seconds from 0 to "
                                  "86400", "window")
        if not isinstance(horizon, timedelta) or not timedelta(0) < horizon <= MAX_HORIZON:
            raise InvalidSchedule(f"horizon {horizon!r} must be a timedelta > 0 and at most "
                                  f"{MAX_HORIZON.days} days", "horizon")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise InvalidSchedule(f"limit {limit!r} must be an integer >= 1", "limit")
        start = require_aware(now, "now") if now is not None else self._now()
        with self._tx(readonly=True) as session:
            rows = self.repo.schedule_rows(session)
        sources = []
        for row in rows:
            schedule, problem = load_schedule(row.schedule)
            if schedule is None or problem:
                continue
            try:
                effective = effective_schedule(schedule, row.calendar)
            except Exception:  # a broken calendar: beat marks the task invalid
                continue
            key = json.dumps([row.schedule, row.calendar], sort_keys=True, default=str)
            sources.append(FireSource(row.name, effective, row.next_run_at, row.last_run_at,
                                      float(row.jitter or 0.0), key))
        return find_conflicts(sources, window=float(window), start=start, horizon=horizon,
                              high_severity=high_severity, limit=limit)
