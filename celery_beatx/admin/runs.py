"""Runs of tasks: history, statistics, and runs queued by hand (``run_now``, ``backfill``).

A run queued here is inserted ``pending`` with no beat instance as its owner, and the
``runs`` counter is bumped in the same transaction: a running beat sees the counter move
within ``beatx_sync_interval`` and sends the run (with its own deterministic task id), as it
sends runs a crashed beat left pending.  Neither call moves the task's schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .. import states
from ..beat.dispatch import run_task_id
from ..definitions import effective_schedule
from ..errors import InvalidSchedule, TaskNotFound
from ..schedules.base import require_aware
from ..schedules.occurrences import occurrences
from ..store.rows import checked_definition, load_schedule
from ._base import AdminBase

#: The most runs one ``backfill`` call queues (a longer window is refused, not cut short).
BACKFILL_MAX = 10_000
#: Statuses of runs that finished (the base of ``success_rate`` and of the durations).
FINISHED = (states.SUCCEEDED, states.FAILED)


@dataclass(frozen=True)
class RunInfo:
    """One run of a task: why it exists, what happened to it and when.

    ``kind`` is ``scheduled``, ``catchup``, ``retry``, ``manual`` (``run_now``) or
    ``backfill``; ``reason`` says why a run was skipped, held back or stopped;
    ``duplicates`` counts deliveries of its task id after the first (acknowledged, not
    run); ``worker`` is the worker that started it.
    """

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
    kind: str = "scheduled"
    reason: str | None = None
    duplicates: int = 0
    worker: str | None = None


def run_info(row: Any) -> RunInfo:
    """The public view of a ``beatx_runs`` row."""
    return RunInfo(row.task_name, row.task_id, row.scheduled_at, row.attempt, row.status,
                   row.sent_at, row.started_at, row.finished_at, row.runtime, row.error,
                   kind=row.kind or "scheduled", reason=row.reason,
                   duplicates=row.duplicates or 0, worker=row.worker)


@dataclass(frozen=True)
class TaskStats:
    """What the kept runs of a task did (``beatx_history_keep`` bounds how many are kept).

    ``success_rate`` is succeeded / (succeeded + failed), ``None`` before any run finished;
    ``mean_runtime`` and ``p95_runtime`` (nearest rank) are over finished runs, in
    seconds; ``last_error`` is the newest error text and ``last_error_at`` when that run
    ended.
    """

    name: str
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    succeeded: int = 0
    failed: int = 0
    success_rate: float | None = None
    mean_runtime: float | None = None
    p95_runtime: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    duplicates: int = 0


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class RunsMixin(AdminBase):
    """Runs of tasks in :class:`~celery_beatx.BeatAdmin`."""

    def history(self, name: str, limit: int = 50) -> list[RunInfo]:
        """The newest ``limit`` runs of a task, newest first (a removed task's runs stay)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidSchedule(f"limit {limit!r} must be an integer >= 1", "limit")
        with self._tx(readonly=True) as session:
            return [run_info(r) for r in self.repo.runs_for(session, name, limit)]

    def stats(self, name: str) -> TaskStats:
        """Counts per status, success rate, mean and p95 duration and the last error of a
        task's kept runs.

        :raises TaskNotFound: no such task and no runs of that name.
        """
        with self._tx(readonly=True) as session:
            counts = self.repo.run_counts(session, name)
            if not counts and self.repo.get_task(session, name) is None:
                raise TaskNotFound(f"task {name!r} does not exist")
            runtimes = self.repo.runtimes(session, name, FINISHED)
            last = self.repo.last_error(session, name)
            duplicates = self.repo.duplicate_total(session, name)
        succeeded = counts.get(states.SUCCEEDED, 0)
        failed = counts.get(states.FAILED, 0)
        finished = succeeded + failed
        return TaskStats(
            name=name, total=sum(counts.values()), counts=dict(sorted(counts.items())),
            succeeded=succeeded, failed=failed,
            success_rate=succeeded / finished if finished else None,
            mean_runtime=sum(runtimes) / len(runtimes) if runtimes else None,
            p95_runtime=_p95(runtimes),
            last_error=last[0] if last else None, last_error_at=last[1] if last else None,
            duplicates=duplicates)

    def run_now(self, name: str) -> RunInfo:
        """Queue one extra run of a task now, recorded as ``manual``.

        The schedule does not move: the next scheduled run stays when it was.  The run's
        task id is that of ``(name, now, attempt 0)``; a second call at the very same
        instant is the same run (returned, not queued twice).  A disabled or paused task
        runs too: this is an explicit request.

        :raises TaskNotFound: no such task.
        :raises InvalidSchedule: the task's stored definition cannot be sent.
        """
        now = self._now()

        def body(session: Session) -> RunInfo:
            row = self._row(session, name)
            _, problem = checked_definition(row)
            if problem:
                raise InvalidSchedule(f"task {name!r} cannot be sent: {problem}", "task")
            task_id = run_task_id(name, now, 0)
            if self.repo.get_run(session, task_id) is None:
                self.repo.add_runs(session, [self._queued(name, task_id, now, "manual", now)])
                self.repo.bump_counter(session, states.RUNS_COUNTER)
            run = self.repo.get_run(session, task_id)
            assert run is not None
            return run_info(run)

        return self._write(body)

    def backfill(self, name: str, start: datetime, end: datetime) -> int:
        """Queue a run for each occurrence of a task's schedule in ``[start, end)``.

        Each run has the deterministic task id of its occurrence (attempt 0), so an
        occurrence that already has a run (sent when it was due, or by an earlier backfill)
        is skipped: backfilling the same window twice queues nothing the second time, as
        long as the runs are still in the history (``beatx_history_keep``).  The schedule
        followed is the task's current one, calendar included.  Returns how many runs were
        queued.

        :raises InvalidSchedule: naive times, ``end`` not after ``start`` or in the future,
            more than :data:`BACKFILL_MAX` occurrences, or an invalid task schedule.
        :raises TaskNotFound: no such task.
        """
        start = require_aware(start, "start")
        end = require_aware(end, "end")
        now = self._now()
        if end > now:
            raise InvalidSchedule(f"end {end.isoformat()!r} is in the future (now is "
                                  f"{now.isoformat()}): backfill covers past windows only",
                                  "end")
        if end <= start:
            raise InvalidSchedule(f"end {end.isoformat()!r} is not after start "
                                  f"{start.isoformat()!r}", "end")

        def body(session: Session) -> int:
            row = self._row(session, name)
            fields, problem = checked_definition(row)
            schedule, broken = load_schedule(row.schedule)
            if problem or schedule is None:
                raise InvalidSchedule(f"task {name!r} has an invalid definition: "
                                      f"{problem or broken}", "schedule")
            times = occurrences(effective_schedule(schedule, fields["calendar"]), start, end,
                                reference=row.next_run_at or row.last_run_at,
                                limit=BACKFILL_MAX)
            wanted = {run_task_id(name, when, 0): when for when in times}
            known = self.repo.existing_run_ids(session, wanted)
            runs = [self._queued(name, task_id, when, "backfill", now)
                    for task_id, when in wanted.items() if task_id not in known]
            if runs:
                self.repo.add_runs(session, runs)
                self.repo.bump_counter(session, states.RUNS_COUNTER)
            return len(runs)

        return self._write(body)

    @staticmethod
    def _queued(name: str, task_id: str, scheduled_at: datetime, kind: str,
                now: datetime) -> dict[str, Any]:
        # No beat owns it (instance_id None): the leader sends it as an orphan.
        return {"task_name": name, "task_id": task_id, "scheduled_at": scheduled_at,
                "attempt": 0, "status": states.PENDING, "kind": kind, "token": None,
                "reason": None, "instance_id": None, "created_at": now, "duplicates": 0}
