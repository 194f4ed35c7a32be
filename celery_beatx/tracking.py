"""Worker-side run tracking: :func:`track` records what each run beat sent did.

One line in the Celery app module::

    celery_beatx.track(app)

connects worker signals that update the ``beatx_runs`` row of a celery-beatx send, found by
its task id: ``started`` (with the worker's name), then ``succeeded``, ``failed`` (with the
error), ``retried`` (Celery's own ``self.retry()``) or ``revoked``, with timestamps and
runtime.  Only messages that carry beat's ``beatx_run`` header are looked at; any other task
costs one attribute lookup per signal.

**Each occurrence runs once.**  The ``started`` transition is a conditional update that only
one delivery of a task id can win.  :class:`TrackedTask` does it in ``before_start`` and
raises :class:`celery.exceptions.Ignore` for a delivery that lost: the message is
acknowledged, the run's ``duplicates`` count goes up, and the task body never runs.
``track(app)`` makes :class:`TrackedTask` the app's default task class; a project with its
own base class adds :class:`TrackedTask` to that class's bases.

**The database never holds a task up.**  The worker opens the database beat uses (same
settings: ``beatx_database_url``, ``BEATX_DATABASE_URL``, ``beatx_engine_options``) but never
creates one nor migrates it.  The conditional start waits at most ``beatx_track_timeout``
seconds (1 by default); past that, or while the database is unreachable, the task runs
without the duplicate check and its start is written later.  Outcomes are written by a
background thread per process from a bounded queue, retried with back-off, and dropped (one
log line) when the queue is full.  Each of these conditions is logged once, not per task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from celery import Task, signals
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded, WorkerLostError
from celery.utils.imports import symbol_by_name

from . import states
from .config import BeatxConfig

logger = logging.getLogger("celery_beatx.tracking")

UTC = timezone.utc
T = TypeVar("T")
#: The message header beat puts on each send (see ``Scheduler._send_entry``).
HEADER = "beatx_run"
#: The most characters of an error text stored with a run.
ERROR_MAX = 2000
#: Room for worker names in ``beatx_runs.worker``.
NAME_MAX = 200
#: Outcomes waiting for the database, per process; more are dropped.
QUEUE_MAX = 10_000
#: Outcomes written in one transaction, and how long the writer waits for more to join.
BATCH_MAX = 200
LINGER = 0.1
#: Back-off between attempts while the database is unreachable (seconds).
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0
#: How often a missing database or schema is looked for again (seconds).
RECHECK_SECONDS = 10.0
#: How long a stopping worker process waits for its queued outcomes to be written.
FLUSH_SECONDS = 5.0
#: The oldest schema revision with every column written here.
MIN_REVISION = "0002"

#: A delivery that Celery itself repeats (a retry, or a redelivery after a lost worker)
#: may start a run whose previous delivery started but never finished.
STARTABLE_AGAIN = (*states.STARTABLE, states.STARTED)
#: Runs an outcome may still be written to (their start may not have been recorded).
OPEN = states.STARTABLE

#: Trackers of every app :func:`track` was called for (process-wide signals find them).
_TRACKERS: weakref.WeakSet[Tracker] = weakref.WeakSet()


# -- public API ---------------------------------------------------------------------------

class TrackedTask(Task):  # type: ignore[misc]
    """Base task class that runs each celery-beatx occurrence once.

    Before a task sent by beat runs, its run is moved to ``started`` by a conditional update;
    a second delivery of the same task id finds the run taken, is counted in the run's
    ``duplicates`` and is acknowledged without running.  Tasks not sent by beat are not
    touched.  :func:`track` makes this the app's default task class; a project with its own
    base class inherits from it::

        class MyBase(celery_beatx.TrackedTask):
            ...
    """

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        super().before_start(task_id, args, kwargs)
        request = self.request
        if _run_of(request) is None:
            return
        tracker = _tracker_of(self)
        if tracker is not None and not tracker.start(request):
            logger.info("celery-beatx: %s[%s] is a duplicate delivery of a run another "
                        "delivery started: acknowledged, not run", self.name, task_id)
            raise Ignore()


def track(app: Any) -> None:
    """Record the outcome of every run beat sends, from the workers of ``app``.

    Call it once in the Celery app module, before the tasks are defined (``@app.task`` and
    ``@shared_task`` tasks then get :class:`TrackedTask` as their base).  With
    ``beatx_track_results = False`` it does nothing (one info line says so).  Calling it
    again for the same app does nothing.
    """
    if getattr(app, "_beatx_tracker", None) is not None:
        return
    if app.configured and app.conf.get("beatx_track_results") is False:
        logger.info("celery-beatx: run tracking is off (beatx_track_results = False)")
        return
    tracker = Tracker(app)
    app._beatx_tracker = tracker
    _TRACKERS.add(tracker)
    _install_task_class(app)
    _connect_signals()


# -- the per-app tracker ------------------------------------------------------------------

@dataclass
class _Start:
    """A start that could not be written before the task ran."""

    task_id: str
    started_at: datetime
    worker: str | None
    startable: tuple[str, ...]


@dataclass
class _Outcome:
    task_id: str
    status: str
    started_at: datetime | None
    finished_at: datetime
    runtime: float | None
    error: str | None
    reason: str | None
    worker: str | None


@dataclass
class _End:
    """A run ended outside its execution (revoked, or its process lost)."""

    task_id: str
    status: str
    finished_at: datetime
    error: str | None
    reason: str


class Tracker:
    """Run tracking of one Celery app: settings, database access and outcome queue.

    Everything that belongs to an OS process (the engine's connections, the threads, the
    runs started here) is rebuilt in a forked child, so the prefork pool works whether the
    parent touched the database before forking or not.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.config: BeatxConfig | None = None
        #: ``None`` until the settings are read (at worker start, or at first use).
        self.enabled: bool | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._repo: Any = None
        self._start_repo: Any = None
        self._reset_process()
        os.register_at_fork(after_in_child=self._after_fork)

    # -- settings and process state ----------------------------------------------------------

    def resolve(self) -> bool:
        """Read the settings once; returns whether tracking is on."""
        if self.enabled is not None:
            return self.enabled
        with self._lock:
            if self.enabled is None:
                try:
                    config = BeatxConfig.from_app(self.app)
                    if not config.track_timeout > 0:
                        raise ValueError(f"beatx_track_timeout {config.track_timeout!r} "
                                         "must be a number of seconds > 0")
                except Exception as exc:
                    logger.error("celery-beatx: run tracking is off: its settings cannot be "
                                 "used (%s: %s)", type(exc).__name__, exc)
                    self.enabled = False
                else:
                    self.config = config
                    if not config.track_results:
                        logger.info("celery-beatx: run tracking is off "
                                    "(beatx_track_results = False)")
                    self.enabled = config.track_results
        return bool(self.enabled)

    def _reset_process(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._writer: _Writer | None = None
        self._pending: Future[str] | None = None
        #: task id -> (started_at, monotonic start, worker) of runs started in this process.
        self.started: dict[str, tuple[datetime, float, str | None]] = {}
        self.down = False
        self.dropped = 0
        self._schema_ok: bool | None = None
        self._schema_lock = threading.Lock()
        self._schema_checked = float("-inf")
        self._schema_warned = False
        self._errors_logged: set[str] = set()
        self._untracked_names: set[str] = set()

    def _after_fork(self) -> None:
        """In a forked child: nothing of the parent's threads or connections is used."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        for repo in {id(r): r for r in (self._repo, self._start_repo) if r}.values():
            repo.engine.dispose(close=False)
        self._reset_process()

    def _own_process(self) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (should not happen)
            self._after_fork()

    # -- database ------------------------------------------------------------------------

    def _repository(self) -> Any:
        if self._repo is None:
            from .store.engine import make_engine
            from .store.repository import Repository

            assert self.config is not None
            url = self.config.database_url
            self._repo = Repository(make_engine(url, _engine_options(url, self.config)))
        return self._repo

    def _start_repository(self) -> Any:
        """Where the conditional start is written: a server database in autocommit mode
        (the start is one statement: one round trip, no BEGIN/COMMIT), SQLite through the
        transactional engine (its engine begins every transaction explicitly)."""
        if self._start_repo is None:
            repo = self._repository()
            if repo.engine.dialect.name == "sqlite":
                self._start_repo = repo
            else:
                from .store.engine import make_engine
                from .store.repository import Repository

                assert self.config is not None
                url = self.config.database_url
                # Nothing to roll back on an autocommit connection: no reset round trip.
                options = dict(_engine_options(url, self.config), isolation_level="AUTOCOMMIT",
                               pool_reset_on_return=None)
                self._start_repo = Repository(make_engine(url, options))
        return self._start_repo

    def _ready(self) -> bool:
        """Whether the database and its schema are there (looked for again every
        :data:`RECHECK_SECONDS` while they are not).  May raise on a connection error."""
        if self._schema_ok:
            return True
        with self._schema_lock:  # a check under way (the warm-up's) is waited for
            return self._check_schema()

    def _check_schema(self) -> bool:
        if self._schema_ok:
            return True
        if time.monotonic() - self._schema_checked < RECHECK_SECONDS:
            return False
        self._schema_checked = time.monotonic()
        assert self.config is not None
        problem = _missing_file(self.config.database_url)
        if problem is None:
            with _quiet_alembic():
                from .migrate import current_revision

                problem = _schema_problem(current_revision(self._repository().engine))
        if problem is not None:
            if not self._schema_warned:
                self._schema_warned = True
                logger.warning("celery-beatx: run tracking waits: %s (the worker never "
                               "creates or migrates it; looked for again every %.0f s)",
                               problem, RECHECK_SECONDS)
            return False
        if self._schema_warned:
            logger.info("celery-beatx: the schedule database is there now; tracking runs")
        self._schema_ok = True
        return True

    def _failed(self, exc: BaseException, doing: str) -> None:
        """The database did not answer: say so once per outage."""
        with self._lock:
            if self.down:
                return
            self.down = True
        logger.warning("celery-beatx: the database did not answer while %s (%s: %s); tasks "
                       "run without the duplicate check and outcomes wait in memory (up to "
                       "%d) until it is back", doing, type(exc).__name__, _short(exc),
                       QUEUE_MAX)

    def _succeeded(self) -> None:
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            dropped, self.dropped = self.dropped, 0
        more = f"; {dropped} outcome(s) were dropped while the queue was full" \
            if dropped else ""
        logger.info("celery-beatx: the database answers again%s", more)

    def _error(self, exc: BaseException, doing: str) -> None:
        """A failure that is not an outage (a bug, a refused value): logged once per kind."""
        key = f"{doing}:{type(exc).__name__}"
        if key not in self._errors_logged:
            self._errors_logged.add(key)
            logger.error("celery-beatx: run tracking failed while %s", doing, exc_info=exc)

    # -- the task path -------------------------------------------------------------------

    def start(self, request: Any) -> bool:
        """Record that this delivery starts its run; False when it is a duplicate (another
        delivery of the task id started it) and must not run.

        Never raises and never waits more than ``beatx_track_timeout``.
        """
        try:
            if not self.resolve():
                return True
            self._own_process()
            task_id = request.id
            worker = (request.hostname or "")[:NAME_MAX] or None
            started_at = datetime.now(UTC)
            self.started[task_id] = (started_at, time.monotonic(), worker)
            startable = STARTABLE_AGAIN if _repeated(request) else states.STARTABLE
            if self.down or (self._pending is not None and not self._pending.done()):
                # Known outage, or the last start is still waiting for the database.
                self._queue(_Start(task_id, started_at, worker, startable))
                return True
            future = self._executor_().submit(self._start_now, task_id, started_at, worker,
                                               startable)
        except Exception as exc:
            self._error(exc, "preparing a task start")
            return True
        assert self.config is not None
        try:
            result = future.result(self.config.track_timeout)
        except FutureTimeout:
            self._pending = future
            self._failed(TimeoutError(f"no answer within {self.config.track_timeout:g} s"),
                         "recording a task start")
            return True
        except Exception as exc:
            if _is_outage(exc):
                self._failed(exc, "recording a task start")
                self._queue(_Start(task_id, started_at, worker, startable))
            else:
                self._error(exc, "recording a task start")
            return True
        if result == "duplicate":
            self.started.pop(task_id, None)
            return False
        if result != "started":  # not a recorded run, or no schema: nothing to update
            self.started.pop(task_id, None)
        return True

    def _start_now(self, task_id: str, started_at: datetime, worker: str | None,
                   startable: tuple[str, ...]) -> str:
        if not self._ready():
            return "off"
        repo = self._start_repository()

        def attempt() -> str:
            with repo.connection() as conn:
                return str(repo.start_run(conn, task_id, started_at=started_at,
                                          worker=worker, startable=startable))

        result = _fresh_connection_retry(attempt)
        self._succeeded()
        return result

    def finish(self, task_id: str, state: str, retval: Any) -> None:
        """Queue the outcome of a run this process started."""
        info = self.started.pop(task_id, None)
        if info is None:
            return
        started_at, began, worker = info
        status, error, reason = _outcome(state, retval)
        if status is None:
            return
        self._queue(_Outcome(task_id, status, started_at, datetime.now(UTC),
                             round(time.monotonic() - began, 6), error, reason, worker))

    def revoked(self, task_id: str, reason: str) -> None:
        """Queue a revocation (a task revoked, expired or terminated)."""
        if not self.resolve():
            return
        self._own_process()
        self.started.pop(task_id, None)
        self._queue(_End(task_id, states.REVOKED, datetime.now(UTC), None, reason))

    def lost(self, task_id: str, exc: BaseException) -> None:
        """Queue the failure of a run whose process was lost or killed at its hard time
        limit (reported by the worker's main process: the child never reports it)."""
        if not self.resolve():
            return
        self._own_process()
        reason = ("killed at its hard time limit" if isinstance(exc, TimeLimitExceeded)
                  else "the worker process executing it was lost")
        self._queue(_End(task_id, states.FAILED, datetime.now(UTC), error_text(exc), reason))

    def _executor_(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=2,
                                                thread_name_prefix="beatx-track-start")
        return self._executor

    def _queue(self, item: Any) -> None:
        if self._writer is None:
            self._writer = _Writer(self)
        self._writer.put(item)

    # -- worker life cycle -----------------------------------------------------------------

    def warm(self) -> None:
        """At worker (process) start: read the settings and look for the schema in the
        background, so that the first task does not pay for it."""
        try:
            if self.resolve():
                self._own_process()
                self._executor_().submit(self._warm_check)
        except Exception as exc:
            self._error(exc, "starting")

    def _warm_check(self) -> None:
        try:
            self._ready()
        except Exception as exc:
            if _is_outage(exc):
                self._failed(exc, "looking for the schedule database")
            else:
                self._error(exc, "looking for the schedule database")

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait up to ``timeout`` seconds for queued outcomes to be written."""
        writer = self._writer
        if writer is None or self._pid != os.getpid():
            return True
        return writer.wait_empty(timeout)

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Write what is queued (up to ``timeout`` seconds), then close the connections."""
        self.flush(timeout)
        for repo in {id(r): r for r in (self._repo, self._start_repo) if r}.values():
            repo.engine.dispose()

    # -- the background writer's part ------------------------------------------------------

    def write(self, batch: list[Any]) -> None:
        """Write queued items in one transaction, in order (raises on failure)."""
        if not self._ready():
            return  # no database or schema: tracking waits (already logged)
        repo = self._repository()

        def attempt() -> None:
            with repo.connection() as conn:
                outcomes: list[dict[str, Any]] = []
                endings: list[dict[str, Any]] = []

                def flush() -> None:
                    repo.finish_runs(conn, outcomes, open_statuses=OPEN)
                    repo.end_runs(conn, endings, open_statuses=OPEN)
                    outcomes.clear()
                    endings.clear()

                for item in batch:
                    if isinstance(item, _Start):
                        flush()
                        repo.start_run(conn, item.task_id, started_at=item.started_at,
                                       worker=item.worker, startable=item.startable)
                    elif isinstance(item, _Outcome):
                        outcomes.append(vars(item))
                    else:
                        endings.append(vars(item))
                flush()

        _fresh_connection_retry(attempt)

    def probe(self) -> None:
        """One round trip to the database (raises while it is unreachable)."""
        repo = self._repository()
        with repo.connection() as conn:
            repo.ping(conn)


class _Writer:
    """A bounded queue of outcomes and the thread that writes them."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_MAX)
        #: Outcomes taken off the queue by the writer and not yet written: they count
        #: against ``QUEUE_MAX`` too (the bound is on what waits in memory).
        self.held = 0
        self.thread = threading.Thread(target=self._run, name="beatx-track-writer",
                                       daemon=True)
        self.thread.start()

    def put(self, item: Any) -> None:
        try:
            if self.held + self.queue.qsize() >= QUEUE_MAX:
                raise queue.Full
            self.queue.put_nowait(item)
        except queue.Full:
            tracker = self.tracker
            with tracker._lock:
                first = tracker.dropped == 0
                tracker.dropped += 1
            if first:
                logger.warning("celery-beatx: %d run outcomes are waiting for the database; "
                               "newer ones are dropped until it answers again", QUEUE_MAX)

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.queue.all_tasks_done.wait(left)
        return True

    def _run(self) -> None:
        tracker = self.tracker
        delay = BACKOFF_FIRST
        while True:
            try:
                item = self.queue.get(timeout=delay if tracker.down else None)
            except queue.Empty:  # unreachable and idle: is it back?
                try:
                    tracker.probe()
                except Exception:
                    delay = min(delay * 2, BACKOFF_MAX)
                else:
                    tracker._succeeded()
                    delay = BACKOFF_FIRST
                continue
            # Outcomes arriving within LINGER share one transaction (one commit, which is
            # what a database spends most of a write on).
            batch = [item]
            deadline = time.monotonic() + LINGER
            while len(batch) < BATCH_MAX:
                left = deadline - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=left) if left > 0
                                 else self.queue.get_nowait())
                except queue.Empty:
                    break
            self.held = len(batch)
            try:
                self._write(batch, delay)
            finally:
                self.held = 0
                for _ in batch:
                    self.queue.task_done()
            delay = BACKOFF_FIRST

    def _write(self, batch: list[Any], delay: float) -> None:
        tracker = self.tracker
        while True:
            try:
                tracker.write(batch)
            except Exception as exc:
                if not _is_outage(exc):
                    tracker._error(exc, "writing run outcomes")
                    return  # not something waiting fixes: drop this batch
                tracker._failed(exc, "writing run outcomes")
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            tracker._succeeded()
            return


# -- signal handlers ----------------------------------------------------------------------

def _run_of(request: Any) -> Mapping[str, Any] | None:
    """The ``beatx_run`` header of a task request, or None (not a celery-beatx send)."""
    run = getattr(request, HEADER, None)
    if run is None:
        headers = getattr(request, "headers", None)
        if not headers:
            return None
        run = headers.get(HEADER) if isinstance(headers, dict) else None
    return run if isinstance(run, dict) else None


def _tracker_of(task: Any) -> Tracker | None:
    try:
        return getattr(task.app, "_beatx_tracker", None)
    except Exception:
        return None


def _on_prerun(sender: Any = None, task: Any = None, **_: Any) -> None:
    """Tasks that do not inherit :class:`TrackedTask`: their start is recorded here, but a
    duplicate delivery cannot be stopped (Celery turns an exception raised here into an
    internal error), so it runs and is only counted."""
    if task is None or isinstance(task, TrackedTask):
        return
    request = task.request
    if _run_of(request) is None:
        return
    tracker = _tracker_of(task)
    if tracker is None:
        return
    if task.name not in tracker._untracked_names:
        tracker._untracked_names.add(task.name)
        logger.warning("celery-beatx: task %s does not inherit celery_beatx.TrackedTask: a "
                       "duplicate delivery of its runs is recorded but still runs (add "
                       "TrackedTask to its base class, or call track(app) before the task "
                       "is defined)", task.name)
    tracker.start(request)


def _on_postrun(sender: Any = None, task_id: str | None = None, task: Any = None,
                state: str | None = None, retval: Any = None, **_: Any) -> None:
    if task is None or _run_of(task.request) is None:
        return
    tracker = _tracker_of(task)
    if tracker is not None and task_id is not None:
        try:
            tracker.finish(task_id, state or "", retval)
        except Exception as exc:  # tracking never fails a task
            tracker._error(exc, "recording an outcome")


def _on_revoked(sender: Any = None, request: Any = None, terminated: bool = False,
                signum: Any = None, expired: bool = False, **_: Any) -> None:
    if request is None or _run_of(request) is None:
        return
    tracker = _tracker_of(sender)
    if tracker is None:
        return
    if expired:
        reason = "expired before it started"
    elif terminated:
        reason = f"terminated (signal {signum})" if signum else "terminated"
    else:
        reason = "revoked"
    try:
        tracker.revoked(request.id, reason)
    except Exception as exc:
        tracker._error(exc, "recording a revocation")


def _on_failure(sender: Any = None, task_id: str | None = None, exception: Any = None,
                **_: Any) -> None:
    """Failures the worker's main process reports for a child that never could: the
    process was lost (killed, out of memory) or killed at the task's hard time limit.  The
    request may not be at hand there, so these are matched by task id alone (a task beat did
    not send has no run: nothing is updated)."""
    if not isinstance(exception, (TimeLimitExceeded, WorkerLostError)) or task_id is None:
        return
    tracker = _tracker_of(sender)
    if tracker is None:
        return
    try:
        tracker.lost(task_id, exception)
    except Exception as exc:
        tracker._error(exc, "recording a lost run")


#: The worker's main process (``None``: not a worker).
_MAIN_PID: int | None = None


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """In the worker's main process, before it forks anything: read the settings (forked
    children inherit them: one "off" log line) and import what tracking uses.  A module
    imported for the first time by a background thread could be half-imported, its lock
    held, at the moment the main process forks (a pool child, the ``-B`` beat process),
    and the child would hang importing it."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    tracker = getattr(getattr(sender, "app", None), "_beatx_tracker", None)
    if tracker is None:
        return
    if tracker.resolve():
        try:
            with _quiet_alembic():
                from . import migrate  # noqa: F401
                from .store import engine, repository  # noqa: F401

                _known_revisions()
        except Exception as exc:
            tracker._error(exc, "starting")


def _on_process_init(**_: Any) -> None:
    # Warm up in pool children only: the main process (solo pool) may still fork (``-B``),
    # and must not have threads of ours in the middle of something when it does.
    if os.getpid() == _MAIN_PID:
        return
    for tracker in list(_TRACKERS):
        tracker.warm()


def _on_process_shutdown(**_: Any) -> None:
    for tracker in list(_TRACKERS):
        if tracker._writer is not None and not tracker.flush():
            logger.warning("celery-beatx: %d run outcome(s) could not be written before "
                           "the worker stopped", tracker._writer.queue.qsize())


_CONNECTED = False


def _connect_signals() -> None:
    global _CONNECTED
    if _CONNECTED:
        return
    _CONNECTED = True
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="beatx-prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="beatx-postrun")
    signals.task_revoked.connect(_on_revoked, weak=False, dispatch_uid="beatx-revoked")
    signals.task_failure.connect(_on_failure, weak=False, dispatch_uid="beatx-failure")
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="beatx-init")
    signals.worker_process_init.connect(_on_process_init, weak=False,
                                        dispatch_uid="beatx-process-init")
    signals.worker_process_shutdown.connect(_on_process_shutdown, weak=False,
                                            dispatch_uid="beatx-process-shutdown")
    signals.worker_shutdown.connect(_on_process_shutdown, weak=False,
                                    dispatch_uid="beatx-shutdown")


def _install_task_class(app: Any) -> None:
    """Make :class:`TrackedTask` the app's default task class (unless the app has its own:
    then that class should inherit it, and a warning says so)."""
    current = app.task_cls
    cls = symbol_by_name(current) if isinstance(current, str) else current
    if isinstance(cls, type) and issubclass(cls, TrackedTask):
        return
    if cls is not Task:
        logger.warning("celery-beatx: the app's task class %s does not inherit "
                       "celery_beatx.TrackedTask: a duplicate delivery of a beat run is "
                       "recorded but still runs; add TrackedTask to its bases",
                       getattr(cls, "__qualname__", cls))
        return
    app.task_cls = TrackedTask
    # ``app.Task`` is a cached property: built again from ``task_cls`` on next use.
    app.__dict__.pop("Task", None)


# -- helpers ------------------------------------------------------------------------------

def _repeated(request: Any) -> bool:
    """A delivery Celery itself repeats: a retry, or a message the broker delivers again
    because the worker that had it was lost (``acks_late``)."""
    if request.retries:
        return True
    info = request.delivery_info
    return bool(info and info.get("redelivered"))


def _outcome(state: str, retval: Any) -> tuple[str | None, str | None, str | None]:
    """``(status, error, reason)`` of a finished execution (Celery's ``state``)."""
    if state == "SUCCESS":
        return states.SUCCEEDED, None, None
    if state == "FAILURE":
        return states.FAILED, error_text(retval), None
    if state == "RETRY":
        cause = retval.exc if isinstance(retval, Retry) and retval.exc is not None else retval
        return states.RETRIED, error_text(cause), "Celery retry: the task will run again"
    if state == "IGNORED":
        return states.SUCCEEDED, None, "the task raised Ignore (e.g. it replaced itself)"
    if state == "REJECTED":
        if isinstance(retval, Reject) and retval.requeue:
            return states.RETRIED, error_text(retval), "rejected and requeued"
        return states.FAILED, error_text(retval), "rejected"
    return None, None, None


def error_text(exc: Any) -> str:
    """``"Type: message"`` of an exception, at most :data:`ERROR_MAX` characters."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails
        message = object.__repr__(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > ERROR_MAX:
        text = text[:ERROR_MAX - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return text


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]


def _is_outage(exc: BaseException) -> bool:
    """Whether waiting may fix ``exc`` (the database is down, busy or unreachable)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                        sa_exc.TimeoutError, OSError, TimeoutError)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


def _fresh_connection_retry(attempt: Callable[[], T]) -> T:
    """Run ``attempt``; once more if it failed on a pooled connection the server had closed
    (a database restart): that is not an outage.  (The worker's engine does not ping each
    connection it takes from the pool: one round trip less per task.)"""
    from sqlalchemy.exc import DBAPIError

    try:
        return attempt()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return attempt()


def _engine_options(url: str, config: BeatxConfig) -> dict[str, Any]:
    """The app's engine options, plus connect timeouts for the drivers that take one (a
    worker must not hang on a server that does not answer), and no ping per pool checkout
    (see :func:`_fresh_connection_retry`) unless the options ask for it."""
    from sqlalchemy.engine import make_url

    options = dict(config.engine_options)
    options.setdefault("pool_pre_ping", False)
    parsed = make_url(url)
    connect_args = dict(options.get("connect_args") or {})
    driver = parsed.get_driver_name()
    if driver in ("psycopg", "psycopg2", "pymysql", "mysqldb", "mariadbconnector"):
        connect_args.setdefault("connect_timeout", 5)
    if driver in ("psycopg", "psycopg2") and "options" not in connect_args:
        # A commit returns before its WAL record is flushed (PostgreSQL's asynchronous
        # commit): a third less time per task start.  It is still atomic and at once visible
        # to every other session (so one delivery wins); only a server crash can forget the
        # last fraction of a second of run marks, never schedule data (beat's own
        # connections are not affected).
        connect_args["options"] = "-c synchronous_commit=off"
    elif parsed.get_backend_name() == "sqlite":
        connect_args.setdefault("timeout", 10)
    options["connect_args"] = connect_args
    return options


def _missing_file(url: str) -> str | None:
    """For a SQLite URL: why there is no database to open (the worker never creates one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return f"{url} is an in-memory database, which no other process can see"
    if path.startswith("file:"):
        return None  # a URI: its options decide
    if not os.path.exists(path):
        return (f"there is no database file {os.path.abspath(path)} (start beat first, or "
                "point beatx_database_url / BEATX_DATABASE_URL at beat's database)")
    return None


def _schema_problem(current: str | None) -> str | None:
    from .migrate import MIGRATE_COMMAND

    if current is None:
        return "the database has no celery-beatx schema yet (beat creates it when it starts)"
    known = _known_revisions()
    if current in known and known.index(current) < known.index(MIN_REVISION):
        return (f"the celery-beatx schema is at {current}, older than run tracking needs "
                f"({MIN_REVISION}): run `{MIGRATE_COMMAND}`")
    return None


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    # Alembic announces each plugin it sets up (on import) at INFO: nothing a worker log
    # needs.
    chatter = logging.getLogger("alembic")
    level = chatter.level
    chatter.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        chatter.setLevel(level)


_REVISIONS: list[str] = []


def _known_revisions() -> list[str]:
    """Shipped revisions, oldest first."""
    if not _REVISIONS:
        from alembic.script import ScriptDirectory

        from .migrate import alembic_config

        script = ScriptDirectory.from_config(alembic_config())
        _REVISIONS.extend(reversed([r.revision for r in script.walk_revisions()]))
    return _REVISIONS
