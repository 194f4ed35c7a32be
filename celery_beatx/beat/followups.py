"""What happens to runs after they left: retries of failed runs, buffered runs released
when the run before them finishes, and retries whose delay has passed.

Each step is one fenced transaction (only the leader decides), and every decision is stored
with the run, so a beat restart in between neither loses nor doubles a retry: a failed run is
decided once (``retry_state``), its retry waits as a ``waiting`` run with its own
deterministic id until ``retry_at``, and only then becomes ``pending`` and is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..policies import RetryPolicy, next_attempt
from ..states import (
    BUFFERED,
    PENDING,
    RETRY_EXHAUSTED,
    RETRY_NONE,
    RETRY_SCHEDULED,
    WAITING,
)
from ..store.repository import Repository
from .dispatch import Send, run_task_id
from .lease import Fenced, Leadership
from .outage import Outage


class Followups:
    """Retries and buffered runs, driven by :meth:`run` from beat's loop."""

    def __init__(self, repo: Repository, leadership: Leadership, *, queue: Callable[[Send], None],
                 db: Outage, logger: logging.Logger, instance_id: str,
                 clock: Callable[[], datetime]) -> None:
        self.repo = repo
        self.leadership = leadership
        self.queue = queue
        self.db = db
        self.logger = logger
        self.instance_id = instance_id
        self.clock = clock
        #: When the earliest waiting retry is due (None: none, or not known yet).
        self.next_retry_at: datetime | None = None
        self._loaded = False

    def reset(self) -> None:
        """Leadership changed: read the waiting retries again before relying on memory."""
        self._loaded = False
        self.next_retry_at = None

    def retry_due(self, now: datetime) -> bool:
        return not self._loaded or (self.next_retry_at is not None and now >= self.next_retry_at)

    def run(self, now: datetime) -> None:
        """Decide new failures, release buffered runs and send retries that are due."""
        try:
            with self.repo.transaction() as session:
                self.leadership.check_fence(session)
                self._decide_failures(session, now)
                released = self._release(session, self.repo.releasable_buffered(session),
                                         BUFFERED)
                released += self._release(session, self.repo.due_waiting(session, now), WAITING)
                self.next_retry_at = self.repo.next_waiting_at(session)
            self._loaded = True
        except Fenced:
            self.leadership.lost_fence()
            return
        except Exception as exc:
            self.db.failed(exc, "deciding retries")
            return
        self.db.succeeded()
        for send in released:
            self.queue(send)

    def _decide_failures(self, session: Any, now: datetime) -> None:
        failures = self.repo.undecided_failures(session)
        if not failures:
            return
        tasks = {t.name: t for t in self.repo.get_tasks(session, {r.task_name for r in failures})}
        waiting: list[dict[str, Any]] = []
        for run in failures:
            task = tasks.get(run.task_name)
            policy = None
            if task is not None and isinstance(task.retry, dict):
                try:
                    policy = RetryPolicy.from_dict(task.retry)
                except Exception:  # an unusable stored policy: no retry (reported by health)
                    policy = None
            failed_at = run.finished_at or run.sent_at or run.created_at or now
            following = next_attempt(policy, run.attempt, failed_at)
            if following is None:
                self.repo.set_retry_state(session, run.task_id,
                                          RETRY_NONE if policy is None else RETRY_EXHAUSTED)
                if policy is not None:
                    self.logger.warning("beat: %s failed %d time(s); no retries left",
                                        run.task_name, run.attempt + 1)
                continue
            attempt, due = following
            task_id = run_task_id(run.task_name, run.scheduled_at, attempt)
            waiting.append({"task_name": run.task_name, "task_id": task_id,
                            "scheduled_at": run.scheduled_at, "attempt": attempt,
                            "status": WAITING, "kind": "retry", "retry_at": due,
                            "token": self.leadership.token, "instance_id": self.instance_id,
                            "created_at": now,
                            "reason": f"retry {attempt} of {policy.max_retries if policy else 0}"
                                      f" after {run.status}"})
            self.repo.set_retry_state(session, run.task_id, RETRY_SCHEDULED)
            self.logger.info("beat: %s attempt %d failed (%s); retry %d at %s", run.task_name,
                             run.attempt, run.status, attempt, due.isoformat())
        existing = self.repo.existing_run_ids(session, [w["task_id"] for w in waiting])
        self.repo.add_runs(session, [w for w in waiting if w["task_id"] not in existing])

    def _release(self, session: Any, runs: list[Any], old: str) -> list[Send]:
        if not runs:
            return []
        self.repo.set_status(session, [r.task_id for r in runs], old=[old], new=PENDING)
        return [Send(r.task_id, r.task_name, r.scheduled_at, r.attempt, r.kind or "scheduled",
                     finishes=False) for r in runs]
