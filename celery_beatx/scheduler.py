"""``celery_beatx.Scheduler``: Celery's beat loop on a SQL database.

Start beat with ``celery -A proj beat -S celery_beatx.Scheduler`` (or ``-S beatx``).

The scheduler keeps enabled tasks in a heap ordered by next run time.  ``tick()`` sends every
due task, records each run and the task's new state in the database, and sleeps until the
next due task — at most ``beatx_sync_interval``, after which it reads only the tasks whose
``revision`` is newer than the last one it saw (the change feed), never the whole table.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from celery import beat
from celery.schedules import crontab as celery_crontab

from .admin import BeatAdmin, info_from_row, load_schedule, utcnow
from .alerts import Alert, AlertCooldown, dispatch
from .config import BeatxConfig
from .definitions import DEFAULTS, TaskInfo, effective_schedule, validate_fields
from .errors import InvalidSchedule, SchemaOutOfDate, TaskExists
from .migrate import ensure_schema
from .schedules import BaseSchedule
from .store.engine import make_engine
from .store.models import Task
from .store.repository import Repository

logger = logging.getLogger("celery_beatx.scheduler")
UTC = timezone.utc
#: Longest wait between attempts while the database refuses to record sends.
MAX_BACKOFF = 30.0
RUN_NAMESPACE = uuid.UUID("6f0d8c1e-2b7a-5c43-9a1d-6265617478a1")

#: ``source`` of tasks synced from ``beat_schedule``, and of those that left it.
CONFIG, CONFIG_REMOVED = "config", "config-removed"

#: ``options`` keys of a ``beat_schedule`` entry that have their own task field.
_OWN_OPTION_FIELDS = ("queue", "priority", "expires", "headers")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT until the block ends (main thread only).

    Celery's beat handles SIGTERM by closing the scheduler and raising ``SystemExit``
    wherever the main thread is; inside a database transaction or a publish that could leave
    a half-written batch, and some drivers turn the exception into an error of their own.
    The blocks wrapped in this are short (one transaction, one publish), so the signal is
    only delayed, and is handled at a point where the state is consistent.
    """
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_task_id(name: str, scheduled_at: datetime, attempt: int = 0) -> str:
    """Deterministic Celery task id of one occurrence, so duplicates are detectable."""
    key = f"{name}\x00{scheduled_at.astimezone(UTC).isoformat()}\x00{attempt}"
    return str(uuid.uuid5(RUN_NAMESPACE, key))


class Entry(beat.ScheduleEntry):
    """A task as beat holds it in memory: definition, schedule and next run time.

    Unlike Celery's entry it is built from a database row and never rebuilds itself; the
    scheduler advances it in place after each send.
    """

    def __init__(self, name: str | None = None, task: str | None = None,
                 last_run_at: datetime | None = None, total_run_count: int | None = None,
                 schedule: BaseSchedule | None = None, args: Any = (), kwargs: Any = None,
                 options: Mapping[str, Any] | None = None, relative: bool = False,
                 app: Any = None, next_run_at: datetime | None = None,
                 info: TaskInfo | None = None, revision: int = 0) -> None:
        # Celery's constructor would set ``schedule.app`` on our immutable schedules.
        self.app = app
        self.name = name
        self.task = task
        self.args = list(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.schedule = schedule
        self.last_run_at = last_run_at
        self.total_run_count = total_run_count or 0
        self.next_run_at = next_run_at
        self.info = info
        #: The definition revision this entry was built from.
        self.revision = revision

    @classmethod
    def from_info(cls, info: TaskInfo, app: Any = None,
                  schedule: BaseSchedule | None = None) -> Entry:
        """Build the entry for a task (``schedule``: its effective schedule, if known)."""
        options: dict[str, Any] = dict(info.options)
        if info.queue:
            options["queue"] = info.queue
        if info.priority is not None:
            options["priority"] = info.priority
        if info.expires is not None:
            options["expires"] = info.expires
        if info.headers:
            options["headers"] = dict(info.headers)
        return cls(name=info.name, task=info.task, last_run_at=info.last_run_at,
                   total_run_count=info.total_run_count,
                   schedule=schedule or info.effective_schedule,
                   args=info.args, kwargs=info.kwargs, options=options, app=app,
                   next_run_at=info.next_run_at, info=info, revision=info.revision)

    def is_due(self) -> tuple[bool, float]:  # type: ignore[override]
        """Celery-compatible ``(is_due, seconds_to_next)`` from the stored next run."""
        now = utcnow()
        if self.next_run_at is None:
            return False, float("inf")
        wait = (self.next_run_at - now).total_seconds()
        return wait <= 0, max(wait, 0.0)

    def __reduce__(self) -> Any:
        return self.__class__, (self.name, self.task, self.last_run_at, self.total_run_count,
                                self.schedule, self.args, self.kwargs, self.options)


def config_entry_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Map a ``beat_schedule`` entry (Celery's dict form) onto task fields.

    Values are passed on as given, for :func:`validate_fields` to check.
    """
    if not isinstance(entry, Mapping):
        raise InvalidSchedule(f"entry {entry!r} is not a mapping", "entry")
    options = entry.get("options") or {}
    if not isinstance(options, Mapping):
        raise InvalidSchedule(f"options {options!r} must be a mapping", "options")
    options = dict(options)
    fields: dict[str, Any] = {
        "task": entry.get("task"),
        "schedule": entry.get("schedule"),
        "args": entry.get("args") or (),
        "kwargs": entry.get("kwargs") or {},
    }
    for key in _OWN_OPTION_FIELDS:
        if key in options:
            fields[key] = options.pop(key)
    fields["options"] = options
    return fields


def _cleanup(entry: Entry) -> str | None:
    """What a finished one-off asked for (``"disable"`` or ``"delete"``)."""
    schedule = entry.info.schedule if entry.info is not None else entry.schedule
    return getattr(schedule, "cleanup", None)


class Scheduler(beat.Scheduler):
    """Celery beat scheduler backed by SQLAlchemy (see the module docstring)."""

    Entry = Entry
    #: Due entries recorded, sent and confirmed together (one transaction each side).
    batch_size = 1000

    def __init__(self, app: Any, *args: Any, schedule_filename: str | None = None,
                 lazy: bool = False, clock: Callable[[], datetime] | None = None,
                 **kwargs: Any) -> None:
        self.schedule_filename = schedule_filename
        self.beatx = BeatxConfig.from_app(app, schedule_filename)
        self.clock = clock or utcnow
        self._entries: dict[str, Entry] = {}
        self._queue: list[tuple[float, int, str]] = []
        self._seq = 0
        self._revision = 0
        self._last_poll = float("-inf")
        self._cooldown = AlertCooldown()
        #: Task ids of the batch being sent that have left already (see :meth:`close`).
        self._batch_sent: list[str] | None = None
        self._closing = False
        self._failures = 0
        self._backoff_until = float("-inf")
        self.engine: Any = None
        self.repo: Repository | None = None
        self.admin: BeatAdmin | None = None
        super().__init__(app, *args, lazy=lazy, **kwargs)

    # -- set-up --------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Connect, migrate (or refuse), sync ``beat_schedule`` and load enabled tasks."""
        self.engine = make_engine(self.beatx.database_url, self.beatx.engine_options)
        try:
            ensure_schema(self.engine, self.beatx.auto_migrate)
        except SchemaOutOfDate as exc:
            logger.critical("beat: %s", exc)
            raise SystemExit(f"celery-beatx: {exc}") from None
        self.repo = Repository(self.engine)
        self.admin = BeatAdmin(engine=self.engine, clock=self.clock, auto_migrate=False,
                               instance_id=self.beatx.instance_id)
        self.admin._schema_checked = True
        self.admin.timezone = self.beatx.timezone
        self.sync_config(self._config_entries())
        self.recover()
        self.load_all()

    def _config_entries(self) -> dict[str, Any]:
        entries = dict(self.app.conf.beat_schedule or {})
        if self.app.conf.result_expires and not self.app.backend.supports_autoexpire:
            entries.setdefault("celery.backend_cleanup", {
                "task": "celery.backend_cleanup",
                "schedule": celery_crontab("0", "4", "*"),
                "options": {"expires": 12 * 3600},
            })
        return entries

    def sync_config(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Store ``beat_schedule`` entries as ``source="config"`` tasks.

        New entries are added and changed ones updated (a new version).  A config task no
        longer in the config is disabled, never deleted, and marked ``config-removed``; if
        the entry comes back it is enabled again.  Whether a config task is enabled is
        otherwise left alone, so one disabled through the admin API stays disabled across
        restarts.  A broken entry is logged and skipped; the others are still synced.
        """
        assert self.admin is not None
        admin = self.admin
        existing = {t.name: t for source in (CONFIG, CONFIG_REMOVED)
                    for t in admin.list(source=source)}
        for name, entry in entries.items():
            try:
                fields = config_entry_fields(entry)
                current = existing.get(name)
                if current is None:
                    admin.add(name, fields.pop("task"), fields.pop("schedule"),
                              source=CONFIG, **fields)
                    continue
                changes = validate_fields(fields, self.beatx.timezone)
                wanted = dict(DEFAULTS)
                wanted.update(changes)
                definition = current.definition()
                if any(definition.get(k) != v for k, v in wanted.items()):
                    admin.update(name, **fields)
                if current.source == CONFIG_REMOVED:
                    logger.info("beat: %r is back in beat_schedule; enabling it", name)
                    admin._set_source(name, CONFIG, enabled=True)
            except TaskExists:
                logger.warning("beat: beat_schedule entry %r is ignored: a task of that "
                               "name was added through the admin API", name)
            except Exception as exc:  # one bad entry must not keep beat from starting
                logger.error("beat: beat_schedule entry %r is invalid and skipped: %s",
                             name, exc)
        for name, info in existing.items():
            if info.source == CONFIG and name not in entries:
                logger.info("beat: %r left beat_schedule; disabling it", name)
                admin._set_source(name, CONFIG_REMOVED, enabled=False)

    def recover(self) -> None:
        """Re-send runs a crash left ``pending`` (recorded, not known to be sent).

        They go out with the same task id, so a consumer can drop one if it did arrive.
        """
        assert self.repo is not None
        with self.repo.transaction(readonly=True) as session:
            left = self.repo.runs_with_status(session, ("pending",))
            tasks = {t.name: t for t in self.repo.get_tasks(session, {r.task_name for r in left})}
        if not left:
            return
        logger.warning("beat: %d run(s) were left pending by a crash; re-sending them", len(left))
        sent, failed = [], []
        for run in left:
            row = tasks.get(run.task_name)
            if row is None:
                failed.append((run.task_id, "task was removed"))
                continue
            entry = Entry.from_info(info_from_row(row), app=self.app)
            ok, error = self._send(entry, run.task_id, run.scheduled_at, run.attempt)
            (sent.append(run.task_id) if ok else failed.append((run.task_id, error)))
        self._mark(sent, failed)

    def load_all(self) -> None:
        """Load every enabled task into the heap (start-up and leadership changes)."""
        assert self.repo is not None
        marks: dict[str, str | None] = {}
        with self.repo.transaction(readonly=True) as session:
            # Read the revision first: a change committed while we load is seen again by
            # the next poll rather than missed.
            self._revision = self.repo.current_revision(session)
            rows = self.repo.list_tasks(session, enabled=True)
            entries = [self._entry_for(row, marks) for row in rows]
        self._entries = {e.name: e for e in entries if e is not None}
        self._rebuild_queue()
        self._last_poll = time.monotonic()
        self._save_marks(marks)
        logger.info("beat: loaded %d enabled task(s)", len(self._entries))

    def _entry_for(self, row: Task, marks: dict[str, str | None]) -> Entry | None:
        """Entry for ``row``, or None if it cannot be scheduled.

        Changes to the row's invalid mark are collected in ``marks`` and written afterwards
        in a transaction of their own, so loading itself stays read-only.
        """
        loaded = load_schedule(row.schedule)
        schedule, problem = loaded
        entry = None
        if schedule is not None:
            try:  # a custom function not registered here, a calendar that cannot load...
                schedule.check()
                effective = effective_schedule(schedule, row.calendar)
                entry = Entry.from_info(info_from_row(row, loaded), app=self.app,
                                        schedule=effective)
                if entry.next_run_at is None:
                    # Enabled but with no next run: its schedule failed (or found no time)
                    # before. Ask again, so a fixed task resumes and a still-broken one is
                    # reported.
                    entry.next_run_at = effective.next_after(self.clock(), row.last_run_at)
            except Exception as exc:
                entry, problem = None, f"{type(exc).__name__}: {exc}"
        if entry is None:
            if row.invalid_reason != problem:
                logger.error("beat: task %r has an invalid schedule and is skipped: %s",
                             row.name, problem)
                marks[row.name] = problem
            return None
        if row.invalid_reason:
            marks[row.name] = None
        return entry

    def _save_marks(self, marks: dict[str, str | None]) -> None:
        """Write invalid marks (None clears one) and raise an alert for each new one."""
        if not marks:
            return
        assert self.repo is not None
        now = self.clock()
        alerts = [Alert(level="critical", kind="invalid_schedule", task_name=name,
                        message=f"task {name!r} cannot be scheduled and is skipped: {reason}",
                        at=now) for name, reason in marks.items() if reason]
        alerts = [a for a in alerts if self._cooldown.admit(a)]
        try:
            with self.repo.transaction() as session:
                self.repo.mark_invalid(session, marks)
                for alert in alerts:
                    self.repo.add_alert(session, level=alert.level, kind=alert.kind,
                                        task_name=alert.task_name, message=alert.message,
                                        at=alert.at)
        except Exception:
            logger.exception("beat: could not record invalid marks; retrying at next load")
        for alert in alerts:
            dispatch(alert)

    def _rebuild_queue(self) -> None:
        self._queue = []
        for entry in self._entries.values():
            self._push(entry)

    def _push(self, entry: Entry) -> None:
        if entry.next_run_at is None:
            return
        self._seq += 1
        heapq.heappush(self._queue, (entry.next_run_at.timestamp(), self._seq, entry.name))

    # -- the loop ------------------------------------------------------------------------

    def poll_changes(self) -> int:
        """Apply tasks changed since the last poll; returns how many changed."""
        assert self.repo is not None
        marks: dict[str, str | None] = {}
        with self.repo.transaction(readonly=True) as session:
            changed, removed, upto = self.repo.changes_since(session, self._revision)
            for row in changed:
                entry = self._entry_for(row, marks) if row.enabled else None
                if entry is None:
                    self._entries.pop(row.name, None)
                else:
                    self._entries[row.name] = entry
                    self._push(entry)
            for stone in removed:
                self._entries.pop(stone.name, None)
            self._revision = upto
        self._last_poll = time.monotonic()
        self._save_marks(marks)
        if changed or removed:
            logger.info("beat: picked up %d changed and %d removed task(s)",
                        len(changed), len(removed))
        return len(changed) + len(removed)

    def tick(self, *args: Any, **kwargs: Any) -> float:  # type: ignore[override]
        """Poll for changes when due, send every due task, return seconds to sleep."""
        if self._closing:
            # Closed by the shutdown signal handler while a driver swallowed its SystemExit.
            raise SystemExit()
        interval = self.beatx.sync_interval
        if time.monotonic() - self._last_poll >= interval:
            try:
                with signals_deferred():
                    self.poll_changes()
            except Exception:
                logger.exception("beat: could not read changes; retrying next tick")
                self._last_poll = time.monotonic()
        backoff = self._backoff_until - time.monotonic()
        if backoff <= 0:
            now = self.clock()
            due = self._pop_due(now)
            if due:
                self.send_due(due, now)
        if len(self._queue) > 2 * len(self._entries) + 1000:
            self._rebuild_queue()  # drop heap items left behind by moved or removed entries
        wait = min(self.max_interval, interval - (time.monotonic() - self._last_poll))
        backoff = self._backoff_until - time.monotonic()
        if backoff > 0:
            return max(min(wait, backoff), 0.0)
        if self._queue:
            wait = min(wait, self._queue[0][0] - self.clock().timestamp())
        return max(wait, 0.0)

    def _pop_due(self, now: datetime) -> list[Entry]:
        limit = now.timestamp()
        due: list[Entry] = []
        taken: set[str] = set()
        queue = self._queue
        while queue and queue[0][0] <= limit:
            ts, _, name = heapq.heappop(queue)
            entry = self._entries.get(name)
            # Heap items are invalidated lazily: skip those whose entry moved or left.
            if entry is None or entry.next_run_at is None or \
                    entry.next_run_at.timestamp() != ts or name in taken:
                continue
            taken.add(name)
            due.append(entry)
        return due

    def send_due(self, due: list[Entry], now: datetime) -> None:
        """Record, send and confirm due entries, in batches of :attr:`batch_size`."""
        for start in range(0, len(due), self.batch_size):
            if self._closing:
                raise SystemExit()
            if not self._send_batch(due[start:start + self.batch_size], now):
                # The database refused: put the rest back and wait (see tick()).
                self._retry_later(due[start + self.batch_size:])
                return

    def _send_batch(self, due: list[Entry], now: datetime) -> bool:
        """Record, send and confirm one batch; False when it could not be recorded.

        The runs are written ``pending`` together with the tasks' new state before any
        message leaves, and marked ``sent`` after: a crash in between leaves ``pending``
        runs that :meth:`recover` re-sends with the same task id.  An occurrence whose run
        row exists already (sent before a crash, or by another beat) advances the task but
        is not sent again.
        """
        assert self.repo is not None
        plans: list[tuple[Entry, datetime, datetime | None, str]] = []
        broken: dict[str, str] = {}
        for entry in due:
            scheduled = entry.next_run_at
            assert scheduled is not None
            try:
                assert entry.schedule is not None
                following = self._following(entry.schedule, scheduled, now)
            except Exception as exc:  # a broken schedule must not stop beat
                # The due occurrence was computed when the schedule still worked: send it,
                # then take the task out of the loop as invalid.
                following = None
                broken[entry.name] = f"{type(exc).__name__}: {exc}"
            plans.append((entry, scheduled, following, run_task_id(entry.name, scheduled)))
        try:
            with signals_deferred(), self.repo.transaction() as session:
                if any(f is None for _, _, f, _ in plans):
                    # A finished one-off may be deleted below, which takes the feed counter:
                    # take it before the task rows, in the order admin writers use.
                    self.repo.lock_feed(session)
                done_before = self.repo.existing_run_ids(session, [p[3] for p in plans])
                self.repo.add_runs(session, [
                    {"task_name": e.name, "task_id": tid, "scheduled_at": sched,
                     "attempt": 0, "status": "pending",
                     "instance_id": self.beatx.instance_id, "created_at": now}
                    for e, sched, _, tid in plans if tid not in done_before])
                # A schedule with no next time is done (a one-off after its run): disable
                # it.  A broken one stays enabled, so that it runs again once fixed.
                self.repo.save_states(session, [
                    (e.name, e.revision, now, following,
                     following is None and e.name not in broken)
                    for e, _, following, tid in plans if tid not in done_before])
                finished = [e.name for e, _, following, tid in plans if following is None
                            and tid not in done_before and e.name not in broken
                            and _cleanup(e) == "delete"]
                if finished:
                    # A one-off asked to be deleted after its run; the tombstone tells
                    # other beats.  Its run row stays as history.
                    self.repo.remove_tasks(session, finished,
                                           self.repo.next_revision(session), now)
        except Exception:
            self._failures += 1
            delay = min(self.beatx.sync_interval * 2 ** (self._failures - 1), MAX_BACKOFF)
            self._backoff_until = time.monotonic() + delay
            logger.exception("beat: could not record %d due run(s); retrying in %.1f s",
                             len(plans), delay)
            self._retry_later(due)
            return False
        self._failures = 0
        if done_before:
            logger.warning("beat: %d occurrence(s) had been sent already; not sending again",
                           len(done_before))
        sent: list[str] = []
        failed: list[tuple[str, str]] = []
        for entry, _, following, _ in plans:
            entry.last_run_at = now
            entry.total_run_count += 1
            entry.next_run_at = following
            if following is None:
                # Nothing more to run (a one-off after its run): the task was disabled (or
                # deleted) in the same transaction.
                self._entries.pop(entry.name, None)
            else:
                self._push(entry)
        # Between two publishes a shutdown signal may close the scheduler: close() then
        # marks what already left, and what did not stays pending for the next start.
        self._batch_sent = sent
        try:
            for entry, scheduled, _, task_id in plans:
                if task_id in done_before:
                    continue
                if self._closing:
                    raise SystemExit()
                with signals_deferred():
                    ok, error = self._send(entry, task_id, scheduled, 0)
                    (sent.append(task_id) if ok else failed.append((task_id, error)))
        finally:
            self._batch_sent = None
        with signals_deferred():
            self._mark(sent, failed)
        self._prune(entry for entry, *_ in plans)
        for entry in due:
            if entry.name in broken:
                self._invalidate(entry, broken[entry.name])
        return True

    def _prune(self, entries: Iterable[Entry]) -> None:
        """Keep ``beatx_history_keep`` runs per task (``0``: keep all).

        Pruning a task every ``min(keep, 100)`` runs bounds its history to fewer than
        ``keep + 100`` rows at the cost of one DELETE per task per hundred sends.
        """
        keep = self.beatx.history_keep
        if keep <= 0:
            return
        step = min(keep, 100)
        names = sorted(e.name for e in entries if e.total_run_count % step == 0)
        if not names:
            return
        assert self.repo is not None
        try:
            with signals_deferred(), self.repo.transaction() as session:
                for name in names:
                    self.repo.prune_runs(session, name, keep)
        except Exception:
            logger.exception("beat: could not prune run history; trying again later")

    @staticmethod
    def _following(schedule: BaseSchedule, scheduled: datetime,
                   now: datetime) -> datetime | None:
        """The next run after sending the occurrence due at ``scheduled`` at ``now``.

        On time, intervals stay on their grid (no drift).  After downtime that missed
        further occurrences, the one catch-up run re-anchors the schedule on ``now``, as
        Celery does; otherwise the next grid point could follow the catch-up run at once.
        """
        following = schedule.next_after(scheduled, scheduled)
        if following is not None and following <= now:
            return schedule.next_after(now, now)
        return schedule.next_after(now, scheduled)

    def _retry_later(self, entries: list[Entry]) -> None:
        """Put entries back on the heap at their (past) due time, to be tried again."""
        for entry in entries:
            self._push(entry)

    def _send(self, entry: Entry, task_id: str, scheduled: datetime,
              attempt: int) -> tuple[bool, str]:
        options = dict(entry.options)
        headers = dict(options.pop("headers", None) or {})
        headers["beatx_run"] = {"name": entry.name, "scheduled_at": scheduled.isoformat(),
                                "attempt": attempt}
        headers["celery_beat_task"] = True
        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            task = self.app.tasks.get(entry.task)
            if task is not None:
                task.apply_async(entry.args, entry.kwargs, producer=self.producer,
                                 task_id=task_id, headers=headers, **options)
            else:
                self.app.send_task(entry.task, entry.args, entry.kwargs,
                                   producer=self.producer, task_id=task_id, headers=headers,
                                   **options)
        except Exception as exc:
            if self._closing:  # the driver turned our shutdown into an error of its own
                raise SystemExit() from exc
            logger.exception("beat: could not send %s", entry.name)
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""

    def _mark(self, sent: list[str], failed: list[tuple[str, str]]) -> None:
        assert self.repo is not None
        now = self.clock()
        try:
            with self.repo.transaction() as session:
                if sent:
                    self.repo.mark_runs(session, sent, status="sent", at=now)
                for task_id, error in failed:
                    self.repo.mark_runs(session, [task_id], status="send_failed", at=now,
                                        error=error)
        except Exception:
            logger.exception("beat: could not mark %d run(s) sent; they stay pending and are "
                             "re-sent with the same id at the next start", len(sent))

    def _invalidate(self, entry: Entry, reason: str) -> None:
        logger.error("beat: task %r is invalid and is skipped: %s", entry.name, reason)
        self._entries.pop(entry.name, None)
        self._save_marks({entry.name: reason})

    # -- Celery's Scheduler interface ----------------------------------------------------

    def get_schedule(self) -> dict[str, Entry]:
        return self._entries

    def set_schedule(self, schedule: Any) -> None:
        # Celery's base class assigns ``self.data``; our schedule lives in the database.
        pass

    schedule = property(get_schedule, set_schedule)  # type: ignore[assignment]

    def sync(self) -> None:
        """Nothing is buffered: every send is written when it happens."""

    def close(self) -> None:
        """Stop: record what an interrupted batch already sent, release broker and database.

        Celery calls this from its SIGTERM handler, possibly between two publishes of a
        batch; after it, :meth:`tick` refuses to run.
        """
        self._closing = True
        if self._batch_sent:
            sent, self._batch_sent = list(self._batch_sent), None
            self._mark(sent, [])
        try:
            super().close()
        finally:
            if self.engine is not None:
                self.engine.dispose()

    @property
    def info(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.beatx.database_url).render_as_string(hide_password=True)
        return f"    . db -> {url}"
