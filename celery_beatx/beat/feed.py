"""Loading enabled tasks into slots, and the change feed that keeps them current.

At start (and when this beat becomes leader) every enabled task is read once; afterwards only
rows whose ``revision`` is newer than the last one seen are read, every
``beatx_sync_interval``.  A row that cannot be used (undecodable JSON, a schedule that does
not load, a custom function this process does not know) is that task's problem: it is marked
invalid with a critical alert and left out, and the feed goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..alerts import INVALID_SCHEDULE, Alert, AlertCooldown, dispatch
from ..definitions import CATCHUP_MODES, OVERLAP_MODES, effective_schedule
from ..gcpause import gc_paused
from ..policies import jitter_offset
from ..schedules.memory import is_in_memory
from ..states import RUNS_COUNTER
from ..store.repository import REVISION, Repository
from ..store.rows import load_schedule, load_schedule_text
from ..store.types import tolerant_json_loads
from .alerting import resolve, store
from .heap import Slot, SlotHeap, ts
from .outage import cause


@dataclass(frozen=True)
class SlotPolicy:
    """The send-time policy fields of a task (held by its slot; shared between tasks with
    the same values)."""

    catchup: str = "once"
    catchup_limit: int = 100
    jitter: float = 0.0
    overlap: str = "allow"
    depends_on: tuple[str, ...] = ()

    @property
    def gated(self) -> bool:
        """Whether sending needs run states (dependencies or an overlap rule)."""
        return bool(self.depends_on) or self.overlap != "allow"


DEFAULT_POLICY = SlotPolicy()
_POLICIES: dict[SlotPolicy, SlotPolicy] = {}


def policy_of(row: Any) -> SlotPolicy | None:
    """The send-time policy of a row (``None`` for the defaults), or raise ``ValueError``
    naming a field that has the wrong shape."""
    catchup, limit, jitter = row.catchup, row.catchup_limit, row.jitter
    overlap, depends_on = row.overlap, row.depends_on
    if (catchup == "once" and overlap == "allow" and type(limit) is int and limit == 100
            and type(jitter) in (int, float) and jitter == 0 and type(depends_on) is list
            and not depends_on):
        return None  # the defaults, as most tasks have them: nothing to check or build
    if catchup not in CATCHUP_MODES:
        raise ValueError(f"catchup: stored value {catchup!r:.40} is not one of {CATCHUP_MODES}")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"catchup_limit: stored value {limit!r:.40} is not an integer >= 1")
    if not isinstance(jitter, (int, float)) or isinstance(jitter, bool) or jitter < 0:
        raise ValueError(f"jitter: stored value {jitter!r:.40} is not a number >= 0")
    if overlap not in OVERLAP_MODES:
        raise ValueError(f"overlap: stored value {overlap!r:.40} is not one of {OVERLAP_MODES}")
    if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
        raise ValueError(f"depends_on: stored value {depends_on!r:.40} is not a list of names")
    policy = SlotPolicy(catchup, limit, float(jitter), overlap, tuple(depends_on))
    if policy == DEFAULT_POLICY:
        return None
    return _POLICIES.setdefault(policy, policy)


def fire_at(name: str, next_at: datetime | None, policy: SlotPolicy | None) -> float | None:
    """When the occurrence ``next_at`` is sent: plus its jitter, if the task has one."""
    if next_at is None:
        return None
    jitter = policy.jitter if policy else 0.0
    return ts(next_at) + jitter_offset(name, next_at, jitter)


class StoredRow:
    """A task as the start-up load reads it (a plain row, JSON columns as text), with the
    attributes :meth:`Feed.slot_for` reads; ``loaded`` is its parsed schedule, shared with
    every task whose schedule has the same text."""

    __slots__ = ("name", "revision", "schedule", "loaded", "in_memory", "next_run_at",
                 "last_run_at", "total_run_count", "catchup", "catchup_limit", "jitter", "overlap",
                 "depends_on", "calendar", "invalid_reason")

    def __init__(self, values: Sequence[Any]) -> None:
        (self.name, self.revision, schedule, self.next_run_at, self.last_run_at,
         self.total_run_count, self.catchup, self.catchup_limit, self.jitter, self.overlap,
         depends_on, calendar, self.invalid_reason) = values
        self.schedule, self.loaded, self.in_memory = load_schedule_text(schedule)
        # NULL: no dependencies (stored so since 0007); "[]": the same, written before
        self.depends_on = [] if depends_on is None or depends_on == "[]" else _json(depends_on)
        self.calendar = None if calendar is None or calendar == "null" else _json(calendar)


def _json(raw: Any) -> Any:
    return tolerant_json_loads(raw) if isinstance(raw, (str, bytes)) else raw


class Feed:
    """Builds slots from task rows and keeps :attr:`heap` in step with the database."""

    def __init__(self, repo: Repository, heap: SlotHeap, clock: Callable[[], datetime],
                 logger: logging.Logger,
                 memory_entry: Callable[[str], Any] | None = None) -> None:
        self.repo = repo
        self.heap = heap
        self.clock = clock
        self.logger = logger
        #: Returns the in-memory Celery entry of a task driven by its own schedule object.
        self.memory_entry = memory_entry or (lambda _name: None)
        self.revision = 0
        #: The ``runs`` counter as last read: it moves when runs are queued outside beat.
        self.runs_counter = 0
        self._cooldown = AlertCooldown()

    # -- building slots --------------------------------------------------------------------

    def slot_for(self, row: Any, marks: dict[str, str | None]) -> Slot | None:
        """The slot of an enabled task row, or None when it cannot be scheduled.

        Changes of the row's invalid mark are collected in ``marks`` and written afterwards
        by :meth:`save_marks`, so that reading stays read-only.
        """
        problem: str | None
        slot = None
        try:
            # Only a row that says so is driven by an in-memory entry (the admin API cannot
            # turn such a task into a stored schedule, but another beat's config could).
            in_memory = getattr(row, "in_memory", None)
            if in_memory is None:
                in_memory = is_in_memory(row.schedule)
            entry = self.memory_entry(row.name) if in_memory else None
            loaded = getattr(row, "loaded", None)
            schedule, problem = loaded if loaded is not None else load_schedule(row.schedule)
            if entry is not None:
                problem = None
            if problem is None:
                policy = policy_of(row)
                next_at = row.next_run_at if isinstance(row.next_run_at, datetime) else None
                last = row.last_run_at if isinstance(row.last_run_at, datetime) else None
                runs = row.total_run_count if isinstance(row.total_run_count, int) else 0
                if entry is not None:
                    # ``next_at`` is in the entry's own clock; None: ask it at once.
                    slot = Slot(row.name, row.revision, None, next_at, last, runs, policy,
                                entry=entry)
                else:
                    assert schedule is not None
                    schedule.check()
                    effective = effective_schedule(schedule, row.calendar)
                    if next_at is None:
                        # Enabled but with no next run: its schedule failed (or found no
                        # time) before.  Ask again, so a fixed task resumes.
                        next_at = effective.next_after(self.clock(), last)
                    slot = Slot(row.name, row.revision, effective, next_at, last, runs, policy,
                                fire_at=fire_at(row.name, next_at, policy))
        except Exception as exc:
            slot, problem = None, f"{type(exc).__name__}: {exc}"
        if slot is None:
            if row.invalid_reason != problem:
                self.logger.error("beat: task %r cannot be scheduled and is skipped: %s",
                                  row.name, problem)
                marks[row.name] = problem
            return None
        if row.invalid_reason:
            marks[row.name] = None
        return slot

    # -- reading ---------------------------------------------------------------------------

    @gc_paused()  # 100,000 slots that all stay alive
    def load_all(self) -> int:
        """Replace every slot with the enabled tasks in the database."""
        marks: dict[str, str | None] = {}
        with self.repo.transaction(readonly=True) as session:
            # Read the revision first: a change committed while we load is seen again by
            # the next poll rather than missed.
            revision = self.repo.current_revision(session)
            self.runs_counter = self.repo.counter(session, RUNS_COUNTER)
            slots = [self.slot_for(StoredRow(values), marks)
                     for values in self.repo.schedulable_rows(session)]
        self.heap.clear()
        for slot in slots:
            if slot is not None:
                self.heap.put(slot)
        self.revision = revision
        self.save_marks(marks)
        self.logger.info("beat: loaded %d enabled task(s)", len(self.heap))
        return len(self.heap)

    def poll(self) -> int:
        """Apply tasks changed since the last read; returns how many changed."""
        marks: dict[str, str | None] = {}
        fixed: list[str] = []
        with self.repo.transaction(readonly=True) as session:
            # One read for both counters (the revision first, see changes_since).
            counters = self.repo.counters(session, [REVISION, RUNS_COUNTER])
            self.runs_counter = counters[RUNS_COUNTER]
            changed, removed, upto = self.repo.changes_since(session, self.revision,
                                                             upto=counters[REVISION])
            usable = [row.name for row in changed if self.apply_row(row, marks) is not None]
            for stone in removed:
                self.heap.remove(stone.name)
            if usable:
                # A changed task that is schedulable again resolves its invalid_schedule
                # alert: look for such alerts here rather than in a transaction of its own.
                fixed = sorted({a.task_name for a in self.repo.open_alerts(
                    session, [INVALID_SCHEDULE], names=usable) if a.task_name})
        self.revision = upto
        self.save_marks(marks, fixed=fixed)
        if changed or removed:
            self.logger.info("beat: picked up %d changed and %d removed task(s)",
                             len(changed), len(removed))
        return len(changed) + len(removed)

    def apply_row(self, row: Any, marks: dict[str, str | None]) -> Slot | None:
        """Bring the slot of ``row`` up to date (drop it when disabled, paused or unusable).

        A paused task keeps its next run time in the database, so that when it is resumed
        the occurrences it missed go to its catch-up policy.
        """
        schedulable = (row.enabled is True or row.enabled == 1) and row.paused_at is None
        slot = self.slot_for(row, marks) if schedulable else None
        if slot is None:
            self.heap.remove(row.name)
        else:
            self.heap.put(slot)
        return slot

    # -- invalid marks ---------------------------------------------------------------------

    def save_marks(self, marks: dict[str, str | None], fixed: Sequence[str] = ()) -> None:
        """Write invalid marks (None clears one) and raise an alert for each new one; a
        cleared mark, or a task in ``fixed`` (changed and schedulable again, e.g. an admin
        fixed its schedule), resolves the task's open ``invalid_schedule`` alert."""
        if not marks and not fixed:
            return
        if not marks:
            try:  # the common case: nothing to resolve, and no write transaction for it
                with self.repo.transaction(readonly=True) as session:
                    if not self.repo.open_alerts(session, [INVALID_SCHEDULE], names=fixed):
                        return
            except Exception as exc:
                self.logger.debug("beat: could not look for open alerts: %s", cause(exc))
                return
        now = self.clock()
        alerts = [Alert(level="critical", kind=INVALID_SCHEDULE, task_name=name,
                        message=f"task {name!r} cannot be scheduled and is skipped: {reason}",
                        at=now) for name, reason in marks.items() if reason]
        alerts = [a for a in alerts if self._cooldown.admit(a)]
        cleared = sorted({name for name, reason in marks.items() if reason is None}
                         | set(fixed))
        try:
            with self.repo.transaction() as session:
                self.repo.mark_invalid(session, marks)
                alerts = [store(self.repo, session, alert) for alert in alerts]
                still_open: dict[str, list[int]] = {}
                for old in (self.repo.open_alerts(session, [INVALID_SCHEDULE], names=cleared)
                            if cleared else ()):
                    still_open.setdefault(old.task_name or "", []).append(old.id)
                for name, ids in sorted(still_open.items()):
                    alerts.append(resolve(self.repo, session, name, {
                        INVALID_SCHEDULE: (ids, "it can be scheduled again")}, now))
        except Exception as exc:
            self.logger.warning("beat: could not record invalid marks (%s); retrying at next "
                                "load", cause(exc))
            self.logger.debug("beat: invalid marks error", exc_info=exc)
        for alert in alerts:
            dispatch(alert)
