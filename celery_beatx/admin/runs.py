"""Run history of tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._base import AdminBase


@dataclass(frozen=True)
class RunInfo:
    """One recorded send of a task and its outcome."""

    task_name: str
    task_id: str
    scheduled_at: datetime
    attempt: int
    status: str
    sent_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    runtime: float | None
    error: str | None


class RunsMixin(AdminBase):
    """Run history of :class:`~celery_beatx.BeatAdmin`."""

    def history(self, name: str, limit: int = 50) -> list[RunInfo]:
        """The newest ``limit`` runs of a task, newest first."""
        with self._tx(readonly=True) as session:
            return [RunInfo(r.task_name, r.task_id, r.scheduled_at, r.attempt, r.status,
                            r.sent_at, r.started_at, r.finished_at, r.runtime, r.error)
                    for r in self.repo.runs_for(session, name, limit)]
