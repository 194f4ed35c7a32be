"""``celery_beatx.Scheduler``: Celery's beat loop on a SQL database.

Start beat with ``celery -A proj beat -S celery_beatx.Scheduler`` (or ``-S beatx``).

This class is Celery's interface and the glue between Celery and the parts of the loop in
:mod:`celery_beatx.beat`: the leader lease (:mod:`~celery_beatx.beat.lease`), the change feed
(:mod:`~celery_beatx.beat.feed`), the heap of fire times (:mod:`~celery_beatx.beat.heap`) and
the record -> send -> confirm path (:mod:`~celery_beatx.beat.dispatch`).  Every send goes
through Celery's own chain ``apply_entry`` -> ``apply_async`` -> ``send_task``, so subclass
overrides and integrations that patch them keep working.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from celery import beat
from celery.schedules import crontab as celery_crontab
from kombu.exceptions import OperationalError as KombuOperationalError

from .admin import BeatAdmin
from .beat.dispatch import BROKER_DOWN, DROPPED, FAILED, SENT, Dispatcher, Send, run_task_id
from .beat.feed import Feed, fire_at
from .beat.followups import Followups
from .beat.heap import SlotHeap
from .beat.lease import SINGLE, Leadership
from .beat.outage import Outage, cause
from .clock import utcnow
from .config import BeatxConfig
from .definitions import DEFAULTS, TaskInfo, config_entry_fields, validate_fields
from .errors import SchemaOutOfDate, TaskExists
from .migrate import ensure_schema
from .schedules import BaseSchedule
from .store.engine import make_engine
from .store.repository import Repository
from .store.rows import checked_definition

__all__ = ["CONFIG", "CONFIG_REMOVED", "Entry", "Scheduler", "run_task_id"]

logger = logging.getLogger("celery_beatx.scheduler")
UTC = timezone.utc

#: ``source`` of tasks synced from ``beat_schedule``, and of those that left it.
CONFIG, CONFIG_REMOVED = "config", "config-removed"

#: A wall-clock step larger than this (against the monotonic clock) is a clock jump.
CLOCK_JUMP = 5.0
#: How often the leader looks for runs other beats left pending.
RECOVER_EVERY = 10.0

_MISSING = object()


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


class Entry(beat.ScheduleEntry):
    """A task as Celery's interface shows it: built from its database row when asked for
    (beat itself keeps only a compact slot per task, see :mod:`celery_beatx.beat.heap`)."""

    def __init__(self, name: str | None = None, task: str | None = None,
                 last_run_at: datetime | None = None, total_run_count: int | None = None,
                 schedule: Any = None, args: Any = (), kwargs: Any = None,
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
        return cls(name=info.name, task=info.task, last_run_at=info.last_run_at,
                   total_run_count=info.total_run_count,
                   schedule=schedule or info.effective_schedule,
                   args=info.args, kwargs=info.kwargs,
                   options=send_options({k: getattr(info, k) for k in (
                       "options", "queue", "priority", "expires", "headers")}),
                   app=app, next_run_at=info.next_run_at, info=info, revision=info.revision)

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


def send_options(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``apply_async`` options of a task definition (its own fields plus ``options``)."""
    options: dict[str, Any] = dict(fields.get("options") or {})
    if fields.get("queue"):
        options["queue"] = fields["queue"]
    if fields.get("priority") is not None:
        options["priority"] = fields["priority"]
    if fields.get("expires") is not None:
        options["expires"] = fields["expires"]
    if fields.get("headers"):
        options["headers"] = dict(fields["headers"])
    return options


class _ScheduleView(Mapping[str, Entry]):
    """Celery's ``scheduler.schedule``: the enabled tasks beat holds, as entries built on
    access (so that holding 100,000 tasks does not mean 100,000 entry objects)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def __getitem__(self, name: str) -> Entry:
        if name not in self._scheduler._heap_slots:
            raise KeyError(name)
        return self._scheduler._entry_for(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._scheduler._heap_slots.slots))

    def __len__(self) -> int:
        return len(self._scheduler._heap_slots)


class Scheduler(beat.Scheduler):
    """Celery beat scheduler backed by SQLAlchemy (see the module docstring)."""

    Entry = Entry

    def __init__(self, app: Any, *args: Any, schedule_filename: str | None = None,
                 lazy: bool = False, clock: Callable[[], datetime] | None = None,
                 **kwargs: Any) -> None:
        self.schedule_filename = schedule_filename
        self.beatx = BeatxConfig.from_app(app, schedule_filename)
        self.clock = clock or utcnow
        self._heap_slots = SlotHeap()
        self._closing = False
        self._outcome: Any = _MISSING
        self._last_poll = float("-inf")
        self._last_recover = float("-inf")
        self._last_followup = float("-inf")
        self._runs_seen = 0
        self._wall_mono: tuple[float, float] | None = None
        self.engine: Any = None
        self.repo: Repository | None = None
        self.admin: BeatAdmin | None = None
        self.db = Outage("database", logger)
        self.broker = Outage("broker", logger)
        self.leadership: Leadership | None = None
        self.feed: Feed | None = None
        self.dispatcher: Dispatcher | None = None
        self.followups: Followups | None = None
        super().__init__(app, *args, lazy=lazy, **kwargs)
        # Beat must wake at least every sync interval to read changes and renew its lease.
        self.max_interval = min(self.max_interval, self.beatx.sync_interval)

    # -- set-up --------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Connect (waiting for the database), migrate (or refuse), sync ``beat_schedule``,
        and wire the loop.  Tasks are loaded once this beat may send (leader or single)."""
        self.engine = make_engine(self.beatx.database_url, self.beatx.engine_options)
        self._wait_for_schema()
        self.repo = Repository(self.engine)
        self.admin = BeatAdmin(engine=self.engine, clock=self.clock, auto_migrate=False,
                               instance_id=self.beatx.instance_id)
        self.admin._schema_checked = True
        self.admin.timezone = self.beatx.timezone
        self.sync_config(self._config_entries())
        feed = self.feed = Feed(self.repo, self._heap_slots, self.clock, logger)
        lease = self.beatx.lease_seconds
        self.leadership = Leadership(
            self.repo, self.beatx.instance_id, ha=self.beatx.ha, lease_seconds=lease,
            heartbeat_every=self.beatx.sync_interval, started_at=self.clock(), logger=logger,
            db=self.db)
        self.leadership.on_gain = self._on_gain
        self.leadership.on_loss = self._on_loss
        deadline = self.app.conf.beat_cron_starting_deadline
        self.dispatcher = Dispatcher(
            self.repo, self._heap_slots, feed, self.leadership, publish=self._publish,
            db=self.db, broker=self.broker, logger=logger, clock=self.clock,
            instance_id=self.beatx.instance_id, max_in_flight=self.beatx.max_in_flight,
            grace=max(5.0, 2 * self.beatx.sync_interval),
            starting_deadline=float(deadline) if deadline is not None else None,
            history_keep=self.beatx.history_keep, closing=lambda: self._closing)
        self.followups = Followups(
            self.repo, self.leadership, queue=self.dispatcher.unsent.append, db=self.db,
            logger=logger, instance_id=self.beatx.instance_id, clock=self.clock)
        self.leadership.maintain()

    def _wait_for_schema(self) -> None:
        """Migrate (or check) the schema, waiting while the database is unreachable."""
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        while True:
            try:
                ensure_schema(self.engine, self.beatx.auto_migrate)
            except SchemaOutOfDate as exc:
                logger.critical("beat: %s", exc)
                raise SystemExit(f"celery-beatx: {exc}") from None
            except (ArgumentError, NoSuchModuleError, ImportError) as exc:
                raise SystemExit(f"celery-beatx: cannot use database URL: {cause(exc)}") \
                    from None
            except Exception as exc:
                self.db.failed(exc, "starting")
                time.sleep(max(self.db.wait(), 0.1))
                continue
            self.db.succeeded()
            return

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
                fields = config_entry_fields(entry, name)
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

    # -- leadership ----------------------------------------------------------------------

    def _on_gain(self) -> None:
        """Leader (or single): load every enabled task and take over orphaned runs."""
        assert self.feed is not None and self.dispatcher is not None
        try:
            with signals_deferred():
                self.feed.load_all()
        except Exception as exc:
            self.db.failed(exc, "loading tasks")
            self._heap_slots.clear()
            self._last_poll = float("-inf")
            self._needs_load = True
            return
        self._needs_load = False
        self._last_poll = time.monotonic()
        self._runs_seen = self.feed.runs_counter
        if self.followups is not None:
            self.followups.reset()
        self._recover()

    def _on_loss(self) -> None:
        assert self.dispatcher is not None
        self.dispatcher.drop()
        if self.followups is not None:
            self.followups.reset()

    _needs_load = False

    def _recover(self) -> None:
        assert self.dispatcher is not None and self.leadership is not None
        live = None
        if self.leadership.role == SINGLE:
            live = self.leadership.live_instances()
            if live is None:
                return
        self._last_recover = time.monotonic()
        with signals_deferred():
            self.dispatcher.recover(live)

    # -- the loop ------------------------------------------------------------------------

    def poll_changes(self) -> int:
        """Apply tasks changed since the last poll; returns how many changed."""
        assert self.feed is not None
        with signals_deferred():
            count = self.feed.poll()
        self._last_poll = time.monotonic()
        return count

    def tick(self, *args: Any, **kwargs: Any) -> float:  # type: ignore[override]
        """One iteration: keep the lease, read changes, send what is due; returns how long
        to sleep (0 after a send, to come straight back)."""
        if self._closing:
            # Closed by the shutdown signal handler while a driver swallowed its SystemExit.
            raise SystemExit()
        leadership, dispatcher = self.leadership, self.dispatcher
        assert leadership is not None and dispatcher is not None
        self._check_clock()
        with signals_deferred():
            leadership.maintain()
        if not leadership.may_send():
            return self._wait()
        if self._needs_load:
            if not self.db.ready():
                return self._wait()
            self._on_gain()
            if self._needs_load:
                return self._wait()
        interval = self.beatx.sync_interval
        if time.monotonic() - self._last_poll >= interval and self.db.ready():
            try:
                self.poll_changes()
            except Exception as exc:
                self.db.failed(exc, "reading changes")
                self._last_poll = time.monotonic()
            else:
                self.db.succeeded()
        if not self.db.ready():
            return self._wait()
        with signals_deferred():
            if not dispatcher.resolve() or not dispatcher.flush():
                return self._wait()
        if self.broker.down:
            if not self.broker.ready() or not self._probe_broker():
                return self._wait()
        assert self.feed is not None and self.followups is not None
        if time.monotonic() - self._last_recover >= RECOVER_EVERY or \
                self.feed.runs_counter != self._runs_seen:
            # Periodically, and at once when runs were queued outside beat (run_now,
            # backfill): send pending runs nobody else holds.
            self._runs_seen = self.feed.runs_counter
            self._recover()
        now = self.clock()
        if time.monotonic() - self._last_followup >= interval or \
                self.followups.retry_due(now):
            self._last_followup = time.monotonic()
            with signals_deferred():
                self.followups.run(now)
        # A shutdown signal waits for the batch under way (record, publish, confirm: well
        # under a second), so a clean stop leaves no run recorded and not sent.
        if dispatcher.unsent:
            with signals_deferred():
                sent = dispatcher.drain_unsent()
            return 0.0 if sent or dispatcher.unsent else self._wait()
        due = self._heap_slots.pop_due(now.timestamp(), dispatcher.batch_size)
        if due:
            with signals_deferred():
                sent = dispatcher.dispatch(due, now)
            if sent:
                return 0.0
        return self._wait()

    def _wait(self) -> float:
        """How long the loop may sleep: until the next fire time, the next change poll, or
        the next lease or retry action, whichever is first."""
        waits = [self.max_interval,
                 self.beatx.sync_interval - (time.monotonic() - self._last_poll)]
        if self.leadership is not None:
            waits.append(self.leadership.wait())
        blocked = False
        for outage in (self.db, self.broker):
            if outage.down:
                waits.append(outage.wait())
                blocked = True
        if not blocked and self.leadership is not None and self.leadership.may_send():
            nxt = self._heap_slots.next_fire()
            if nxt is not None:
                waits.append(nxt - self.clock().timestamp())
            retry = self.followups.next_retry_at if self.followups is not None else None
            if retry is not None:
                waits.append((retry - self.clock()).total_seconds())
        return max(min(waits), 0.0)

    def _check_clock(self) -> None:
        """Notice the wall clock jumping against the monotonic clock (NTP step, manual
        change, suspend) and put the heap back on the new wall clock."""
        wall, mono = self.clock().timestamp(), time.monotonic()
        previous, self._wall_mono = self._wall_mono, (wall, mono)
        if previous is None:
            return
        drift = (wall - previous[0]) - (mono - previous[1])
        if abs(drift) < CLOCK_JUMP:
            return
        logger.warning("beat: the wall clock jumped %s by %.0f s; %s",
                       "forward" if drift > 0 else "back", abs(drift),
                       "recomputing next runs" if drift < 0 else
                       "tasks due meanwhile are handled by their catch-up policy")
        if drift < 0:
            self._recompute_after_jump(self.clock())

    def _recompute_after_jump(self, now: datetime) -> None:
        """After the clock went back, next runs computed on the old clock lie too far ahead:
        compute them again from now (a last run "in the future" is ignored)."""
        assert self.repo is not None
        changed = []
        for slot in self._heap_slots:
            if slot.schedule is None or slot.next_at is None:
                continue
            last = slot.last_run_at if slot.last_run_at and slot.last_run_at <= now else None
            try:
                nxt = slot.schedule.next_after(now, last)
            except Exception:
                continue
            if nxt is not None and nxt < slot.next_at:
                slot.next_at = nxt
                slot.fire_at = fire_at(slot.name, nxt, slot.policy)
                changed.append((slot.name, slot.revision, None, 0, nxt))
        self._heap_slots.rebuild()
        if changed:
            try:
                with signals_deferred(), self.repo.transaction() as session:
                    self.repo.save_states(session, changed)
            except Exception as exc:
                self.db.failed(exc, "saving next runs after a clock jump")

    # -- sending through Celery ------------------------------------------------------------

    def _publish(self, definition: Any, send: Send) -> tuple[str, Any]:
        """Send one recorded run through ``apply_entry`` (Celery's chain); classify the
        outcome for the dispatcher."""
        try:
            entry = self._send_entry(definition, send)
        except Exception as exc:
            return FAILED, f"{type(exc).__name__}: {exc}"
        self._outcome = _MISSING
        with signals_deferred():
            self.apply_entry(entry, producer=self.producer)
        outcome, self._outcome = self._outcome, _MISSING
        if outcome is _MISSING:
            return DROPPED, "apply_entry returned without sending (a subclass override)"
        if isinstance(outcome, BaseException):
            if self._closing:  # the driver turned our shutdown into an error of its own
                raise SystemExit() from outcome
            if self._is_connection_error(outcome):
                return BROKER_DOWN, outcome
            return FAILED, f"{type(outcome).__name__}: {outcome}"
        return SENT, None

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        """Celery's ``apply_async``, noting the outcome for :meth:`_publish`."""
        try:
            result = super().apply_async(entry, producer, advance, **kwargs)
        except BaseException as exc:
            self._outcome = exc
            raise
        self._outcome = result
        return result

    def _send_entry(self, definition: Any, send: Send) -> Entry:
        """The entry for one send: the task's definition plus its id and ``beatx_run``."""
        run = {"name": send.name, "scheduled_at": send.scheduled_at.isoformat(),
               "attempt": send.attempt, "kind": send.kind}
        if isinstance(definition, beat.ScheduleEntry):
            options = dict(definition.options)
            headers = dict(options.pop("headers", None) or {})
            headers["beatx_run"] = run
            options.update(task_id=send.task_id, headers=headers)
            return self.Entry(**dict(definition, options=options))
        fields, problem = checked_definition(definition)
        if problem:
            raise ValueError(problem)
        options = send_options(fields)
        headers = dict(options.pop("headers", None) or {})
        headers["beatx_run"] = run
        options.update(task_id=send.task_id, headers=headers)
        return self.Entry(name=send.name, task=fields["task"], args=fields["args"],
                          kwargs=fields["kwargs"], options=options, app=self.app,
                          last_run_at=definition.last_run_at,
                          total_run_count=definition.total_run_count)

    def _is_connection_error(self, exc: BaseException) -> bool:
        kinds: tuple[type[BaseException], ...] = (
            OSError, socket.timeout, KombuOperationalError)
        try:
            kinds += tuple(self.connection.connection_errors)
        except Exception:
            pass
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            if isinstance(current, kinds):
                return True
            seen.add(id(current))
            current = current.__cause__ or current.__context__
        return False

    def _probe_broker(self) -> bool:
        """One quick connection attempt while the broker is down; True when it answers.

        When it is back, the cached producer and connection are dropped so the next send
        builds fresh ones.
        """
        conn = self.app.connection_for_write()
        try:
            with signals_deferred():
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                       timeout=2)
        except Exception as exc:
            self.broker.failed(exc, "sending due tasks")
            return False
        finally:
            with contextlib.suppress(Exception):
                conn.release()
        self.__dict__.pop("producer", None)
        old = self.__dict__.pop("connection", None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.release()
        self.broker.succeeded()
        return True

    # -- Celery's Scheduler interface ----------------------------------------------------

    def _entry_for(self, name: str) -> Entry:
        slot = self._heap_slots.get(name)
        if slot is not None and slot.entry is not None:
            return slot.entry
        assert self.admin is not None
        info = self.admin.get(name)
        entry = self.Entry.from_info(info, app=self.app,
                                     schedule=slot.schedule if slot else None)
        if slot is not None:
            entry.next_run_at = slot.next_at
        return entry

    def get_schedule(self) -> Mapping[str, Entry]:
        return _ScheduleView(self)

    def set_schedule(self, schedule: Any) -> None:
        # Celery's base class assigns ``self.data``; our schedule lives in the database.
        pass

    schedule = property(get_schedule, set_schedule)  # type: ignore[assignment]

    def sync(self) -> None:
        """Nothing is buffered: every send is written when it happens."""

    def close(self) -> None:
        """Stop: record what an interrupted chunk already sent, release the lease at once,
        release broker and database.

        Celery calls this from its SIGTERM handler, possibly between two publishes; after
        it, :meth:`tick` refuses to run.
        """
        if self._closing:
            return
        self._closing = True
        try:
            if self.dispatcher is not None:
                self.dispatcher.shutdown()
            if self.leadership is not None:
                self.leadership.stop()
            logger.info("beat: shut down cleanly")
        finally:
            try:
                super().close()
            finally:
                if self.engine is not None:
                    self.engine.dispose()

    @property
    def info(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.beatx.database_url).render_as_string(hide_password=True)
        ha = (f"leader lease {self.beatx.lease_seconds:g} s" if self.beatx.ha
              else "single (beatx_ha off)")
        return f"    . db -> {url}\n    . ha -> {ha}"

