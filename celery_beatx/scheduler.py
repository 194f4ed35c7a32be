"""``celery_beatx.Scheduler``: Celery's beat loop on a SQL database.

Start beat with ``celery -A proj beat -S celery_beatx.Scheduler`` (or ``-S beatx``).

This class is Celery's interface and the glue between Celery and the parts of the loop in
:mod:`celery_beatx.beat`: the leader lease (:mod:`~celery_beatx.beat.lease`), the change feed
(:mod:`~celery_beatx.beat.feed`), the heap of fire times (:mod:`~celery_beatx.beat.heap`) and
the record -> send -> confirm path (:mod:`~celery_beatx.beat.dispatch`).  Every send goes
through Celery's own chain ``apply_entry`` -> ``apply_async`` -> ``send_task``, so subclass
overrides and integrations that patch them keep working.

Celery's runtime API (``add``, ``update_from_dict``, ``merge_inplace``, the ``schedule``
setter) writes through to the database as config tasks.  Entries whose Celery schedule has no
exact equivalent among ours (:mod:`celery_beatx.celery_entries`) are held here in memory and
asked their own ``is_due()`` every tick, in their schedule's clock; their sends take the same
record -> send -> confirm path.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from celery import beat
from celery.schedules import BaseSchedule as CeleryBaseSchedule
from celery.schedules import maybe_schedule
from celery.utils.time import maybe_make_aware
from kombu import Producer as KombuProducer
from kombu.exceptions import OperationalError as KombuOperationalError

from .admin import BeatAdmin
from .beat.alerting import AlertEngine
from .beat.dispatch import (
    BATCH_REFUSED,
    BROKER_DOWN,
    DROPPED,
    FAILED,
    SENT,
    Dispatcher,
    FlushFailed,
    Send,
    run_task_id,
)
from .beat.feed import Feed, fire_at
from .beat.followups import Followups
from .beat.heap import Slot, SlotHeap
from .beat.lease import SINGLE, Fenced, Leadership
from .beat.outage import Outage, cause
from .celery_entries import celery_equivalent, celery_schedule_of, has_lazy, stored_form
from .clock import utcnow
from .config import BeatxConfig
from .definitions import (
    DEFAULTS,
    EXTRA_ENTRY_FIELDS,
    TaskInfo,
    config_entry_fields,
    validate_fields,
)
from .errors import InvalidSchedule, SchemaOutOfDate, TaskExists, TaskNotFound
from .migrate import ensure_schema
from .policies import SCHEDULED, DuePlan
from .schedules import BaseSchedule
from .schedules.convert import safe_repr
from .store.engine import end_idle_transactions, make_engine
from .store.repository import Repository
from .store.rows import load_schedule

__all__ = ["CONFIG", "CONFIG_REMOVED", "Entry", "Scheduler", "run_task_id"]

logger = logging.getLogger("celery_beatx.scheduler")
UTC = timezone.utc

#: ``source`` of tasks synced from ``beat_schedule``, and of those that left it.
CONFIG, CONFIG_REMOVED = "config", "config-removed"

#: A wall-clock step larger than this (against the monotonic clock) is a clock jump.
CLOCK_JUMP = 5.0
#: How often the leader looks for runs other beats left pending.
RECOVER_EVERY = 10.0
#: How often the leader deletes resolved alerts older than ``beatx_alerts_keep_days``.
PRUNE_ALERTS_EVERY = 3600.0
#: Alerts deleted per transaction, and the seconds of one tick a prune may take.
PRUNE_ALERTS_BATCH = 5_000
PRUNE_ALERTS_BUDGET = 0.5

#: A chore (poll, lease, retry) due within this fraction of ``max_interval`` before the end
#: of a full sleep waits for that sleep (see :meth:`Scheduler._wait`).
CHORE_SLACK = 0.3
#: The smallest step between two scheduled times of an in-memory entry.
_TICK = timedelta(microseconds=1)
#: An in-memory entry is asked this much before its next check, as Celery's heap times are
#: (its ``adjust`` drift): the loop wakes that much early.
_EARLY = timedelta(milliseconds=10)

_MISSING = object()
#: A publish batch's ``max_size`` (transport operations) that a chunk never reaches.
UNBOUNDED_BATCH = 2**62


def _aware_utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is UTC, as Celery reads it)."""
    return maybe_make_aware(value).astimezone(UTC)


def _seconds(value: Any, default: float) -> float:
    """A delay Celery's ``is_due()`` returned, in seconds (``default`` when it gave none)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        return default
    return max(float(value), 0.0)


_DEFERRED = frozenset({signal.SIGTERM, signal.SIGINT})
_CAN_MASK = hasattr(signal, "pthread_sigmask")


class signals_deferred:  # noqa: N801 - used like a function: ``with signals_deferred():``
    """Hold SIGTERM/SIGINT until the block ends (main thread only).

    Celery's beat handles SIGTERM by closing the scheduler and raising ``SystemExit``
    wherever the main thread is; inside a database transaction or a publish that could leave
    a half-written batch, and some drivers turn the exception into an error of their own.
    The blocks wrapped in this are short (one transaction, one publish), so the signal is
    only delayed, and is handled at a point where the state is consistent.  Nested blocks
    cost no system call: only the outermost one masks and restores.  (A class, not a
    generator context manager: it wraps every publish.)
    """

    __slots__ = ("outer",)
    #: How many blocks the main thread is in.
    depth = 0

    def __init__(self) -> None:
        self.outer: Any = None

    def __enter__(self) -> None:
        if not _CAN_MASK or threading.current_thread() is not threading.main_thread():
            return
        if signals_deferred.depth == 0:
            self.outer = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
        signals_deferred.depth += 1

    def __exit__(self, *exc: object) -> None:
        if not _CAN_MASK or threading.current_thread() is not threading.main_thread():
            return
        signals_deferred.depth -= 1
        if self.outer is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.outer)
            self.outer = None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _raised_in(exc: BaseException, module: str) -> bool:
    """Whether ``exc`` was raised by code of ``module`` (its innermost frame)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_globals.get("__name__") == module


def _from_kombu_batch(exc: BaseException) -> bool:
    """Whether a failed publish was refused by kombu's publish batch (its own error, or a
    ``RuntimeError`` raised in ``kombu.messaging``) rather than failing for the message."""
    return any(type(e).__name__ == "BatchPublishError" or
               (isinstance(e, RuntimeError) and _raised_in(e, "kombu.messaging"))
               for e in _chain(exc))


def declaring_once(producer_class: type) -> type:
    """A subclass of a kombu ``Producer`` class whose ``maybe_declare`` returns at once for
    an entity its connection has declared already.

    Celery asks kombu to declare the task's queue with every message.  kombu answers from
    the same cache (``connection.declared_entities``, emptied when it reconnects), but only
    after binding a copy of the app's unbound queue to the channel: about a tenth of beat's
    time in a burst.  The check here is kombu's own, made before that copy; an entity not in
    the cache goes through kombu's declaration as before.  A ``Producer`` given to the
    scheduler that is not a class, or whose class has a ``maybe_declare`` of its own, is
    used as it is.
    """
    if not isinstance(producer_class, type) or \
            getattr(producer_class, "maybe_declare", None) is not KombuProducer.maybe_declare:
        # Not a kombu Producer class whose declaration is kombu's (a factory, or a class
        # of the user's with its own maybe_declare, already wrapped included): as given.
        return producer_class

    def maybe_declare(self: Any, entity: Any, retry: bool = False, **retry_policy: Any) -> Any:
        if entity:
            try:
                client = self.channel.connection.client
                cached = entity.can_cache_declaration and \
                    hash(entity) in client.declared_entities
            except AttributeError:  # no connection, or not an entity kombu caches
                cached = False
            if cached:
                return False
        return producer_class.maybe_declare(self, entity, retry, **retry_policy)

    return type(producer_class.__name__, (producer_class,),
                {"maybe_declare": maybe_declare, "__module__": producer_class.__module__,
                 "__doc__": producer_class.__doc__})


class _TransportBatch:
    """An open ``Producer.batch()`` context of kombu, as the dispatcher's
    :class:`~celery_beatx.beat.dispatch.PublishBatch`."""

    def __init__(self, context: Any, unreachable: Callable[[BaseException], bool]) -> None:
        self._context = context
        self._unreachable = unreachable
        context.__enter__()

    def flush(self) -> None:
        try:
            self._context.flush()
        except Exception as exc:
            raise FlushFailed(exc, self._unreachable(exc)) from exc

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(type(error), error, error.__traceback__)


class Entry(beat.ScheduleEntry):
    """A task as Celery's interface shows it.

    Built from its database row when asked for (beat itself keeps only a compact slot per
    task, see :mod:`celery_beatx.beat.heap`), or, for a task driven in memory by a Celery
    schedule object of its own, the Celery entry itself.  As in Celery, a number or a
    ``timedelta`` given as ``schedule`` becomes a Celery ``schedule`` (with ``relative``) and
    a Celery schedule object is attached to ``app``; a Celery entry without ``last_run_at``
    counts from now by its schedule's clock.
    """

    def __init__(self, name: str | None = None, task: str | None = None,
                 last_run_at: datetime | None = None, total_run_count: int | None = None,
                 schedule: Any = None, args: Any = (), kwargs: Any = None,
                 options: Mapping[str, Any] | None = None, relative: bool = False,
                 app: Any = None, next_run_at: datetime | None = None,
                 info: TaskInfo | None = None, revision: int = 0) -> None:
        # Not Celery's constructor: it would set ``schedule.app`` on our immutable schedules.
        self.app = app
        self.name = name
        self.task = task
        self.args = list(args or ())
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        if isinstance(schedule, (int, float, timedelta, CeleryBaseSchedule)) and \
                not isinstance(schedule, bool):
            schedule = maybe_schedule(schedule, relative, app=app)
        self.schedule = schedule
        if last_run_at is None and self.celery_driven:
            last_run_at = self.default_now()
        self.last_run_at = last_run_at
        self.total_run_count = total_run_count or 0
        self.next_run_at = next_run_at
        self.info = info
        #: The definition revision this entry was built from.
        self.revision = revision

    @property
    def celery_driven(self) -> bool:
        """Whether the schedule is a Celery schedule object (its own ``is_due()`` decides)."""
        return isinstance(self.schedule, CeleryBaseSchedule)

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

    def default_now(self) -> datetime:
        """Now, by the schedule's clock (Celery's ``nowfun``/``app.now``) when it has one."""
        if self.celery_driven:
            return self.schedule.now()  # type: ignore[no-any-return,union-attr]
        if self.app is not None:
            return self.app.now()  # type: ignore[no-any-return]
        return utcnow()

    _default_now = default_now

    def is_due(self) -> tuple[bool, float]:  # type: ignore[override]
        """Celery's ``(is_due, seconds_to_next)``: the schedule object's own answer for a
        Celery schedule, else from the stored next run."""
        if self.celery_driven:
            return self.schedule.is_due(self.last_run_at)  # type: ignore[no-any-return,union-attr]
        now = utcnow()
        if self.next_run_at is None:
            return False, float("inf")
        wait = (self.next_run_at - now).total_seconds()
        return wait <= 0, max(wait, 0.0)

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        # ``dict(entry)`` (Celery's way of copying an entry) leaves out private state.
        return iter([(k, v) for k, v in vars(self).items() if not k.startswith("_")])

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


@dataclass
class _Spec:
    """One entry given to the runtime API (or from ``beat_schedule``), ready to write."""

    fields: dict[str, Any]
    #: The Celery entry beat drives in memory, or None (stored as one of our schedules).
    entry: Entry | None
    #: ``last_run_at`` / ``total_run_count`` given explicitly (used for a new task).
    state: dict[str, Any]


class _Foreign(Exception):
    """A value in the schedule mapping that is neither an entry nor an entry's dict."""


class _ScheduleView(MutableMapping[str, Any]):
    """Celery's ``scheduler.schedule`` (and ``scheduler.data``): the tasks this beat holds,
    as entries built on access (so that holding 100,000 tasks does not mean 100,000 entry
    objects).  Writing to it writes through to the database like an admin change (see
    :meth:`Scheduler.add`); a value that is not an entry is kept as given, as Celery keeps
    it, and never sent."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def __getitem__(self, name: str) -> Any:
        scheduler = self._scheduler
        if name in scheduler._foreign:
            return scheduler._foreign[name]
        if name not in scheduler._heap_slots:
            raise KeyError(name)
        return scheduler._entry_for(name)

    def __contains__(self, name: object) -> bool:
        return name in self._scheduler._foreign or name in self._scheduler._heap_slots

    def __iter__(self) -> Iterator[str]:
        names = list(self._scheduler._heap_slots.slots)
        return iter(names + [n for n in self._scheduler._foreign if n not in names])

    def __len__(self) -> int:
        slots = self._scheduler._heap_slots
        return len(slots) + sum(n not in slots for n in self._scheduler._foreign)

    def __setitem__(self, name: str, value: Any) -> None:
        self._scheduler._write({name: value}, strict=True, keep_foreign=True)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._scheduler._drop([name])

    def __repr__(self) -> str:
        return f"<schedule of {len(self)} task(s)>"


#: Longest wait between two attempts to reach the database / the broker during an outage
#: (short: sending must resume within 2 s of a service coming back).
DATABASE_RETRY_CAP = 1.5
BROKER_RETRY_CAP = 1.5


class Scheduler(beat.Scheduler):
    """Celery beat scheduler backed by SQLAlchemy (see the module docstring)."""

    Entry = Entry

    def __init__(self, app: Any, *args: Any, schedule_filename: str | None = None,
                 lazy: bool = False, clock: Callable[[], datetime] | None = None,
                 **kwargs: Any) -> None:
        self.schedule_filename = schedule_filename
        self.beatx = BeatxConfig.from_app(app, schedule_filename)
        #: Beat's clock: Celery's ``app.now()`` (in UTC) unless a test injects one.
        self.clock = clock or (lambda: _aware_utc(app.now()))
        self._heap_slots = SlotHeap()
        self._view = _ScheduleView(self)
        #: Celery entries driven in memory by their own schedule object, by task name.
        self._memory: dict[str, Entry] = {}
        #: Values put in the schedule mapping that are not entries (kept, never sent).
        self._foreign: dict[str, Any] = {}
        #: Entries ``install_default_entries`` gives while the config is read at set-up.
        self._collecting: dict[str, Any] | None = None
        self._setting_up = False
        #: Writes made before set-up connected (a subclass's setup_schedule calling add()
        #: before ours): applied right after the config is synced.
        self._early: list[tuple[dict[str, Any], dict[str, Any]]] = []
        #: Delays (s) the in-memory entries asked this tick answered, for the sleep.
        self._checked: dict[str, float] = {}
        #: In-memory entries whose ``is_due()`` raised, with the error (said once).
        self._failing: dict[str, str] = {}
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
        # Retries back off (0.5 s, doubling) up to a cap kept short, so that beat is sending
        # again within a few seconds of a service coming back.
        self.db = Outage("database", logger, first=0.5, cap=DATABASE_RETRY_CAP)
        self.broker = Outage("broker", logger, first=0.5, cap=BROKER_RETRY_CAP)
        self.leadership: Leadership | None = None
        self.feed: Feed | None = None
        self.dispatcher: Dispatcher | None = None
        self.followups: Followups | None = None
        self.alert_engine: AlertEngine | None = None
        self.webhooks: Any = None
        self.metrics: Any = None
        self._last_alerts = float("-inf")
        self._last_stuck = float("-inf")
        self._last_alert_prune = float("-inf")
        self._equivalents: dict[Any, Any] = {}
        self._equivalents_by_id: dict[int, tuple[Any, Any]] = {}
        super().__init__(app, *args, lazy=True, **kwargs)
        self.Producer = declaring_once(self.Producer)
        # Beat must wake at least every sync interval to read changes and keep its lease: the
        # loop interval (``beat_max_loop_interval``) defaults to it and never exceeds it, as
        # django-celery-beat's does for its own polling.
        given = kwargs.get("max_interval") or app.conf.beat_max_loop_interval
        self.max_interval = min(given or self.beatx.sync_interval, self.beatx.sync_interval)
        if not lazy:
            self._ensure_setup()

    # -- set-up --------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Connect (waiting for the database), migrate (or refuse), sync ``beat_schedule``,
        and wire the loop.  Tasks are loaded once this beat may send (leader or single)."""
        self._setting_up = True
        try:
            self.engine = make_engine(self.beatx.database_url, self.beatx.engine_options)
            idle = max(1.0, self.beatx.lease_seconds / 3)
            if self.beatx.ha:
                # A leader frozen inside a fenced transaction must not keep the lease row
                # locked (and so its lease) past a third of the lease.
                end_idle_transactions(self.engine, idle)
            self._wait_for_schema()
            self.repo = Repository(self.engine)
            if self.beatx.ha:
                self.repo.lock_idle_timeout = idle
            self.admin = BeatAdmin(app=None, engine=self.engine, clock=self.clock,
                                   auto_migrate=False, instance_id=self.beatx.instance_id)
            self.admin.app = self.app
            self.admin._schema_checked = True
            self.admin._writes_memory_entries = True
            self.admin.timezone = self.beatx.timezone
            self.feed = None
            self._memory.clear()
            self._foreign.clear()
            self._heap_slots.clear()
            self.data = self._view
            self.sync_config(self._config_entries())
            early, self._early = self._early, []
            for entries, options in early:
                self._write(entries, **options)
        finally:
            self._setting_up = False
        feed = self.feed = Feed(self.repo, self._heap_slots, self.clock, logger,
                                memory_entry=self._memory.get)
        lease = self.beatx.lease_seconds
        self.leadership = Leadership(
            self.repo, self.beatx.instance_id, ha=self.beatx.ha, lease_seconds=lease,
            heartbeat_every=self.beatx.sync_interval, started_at=self.clock(), logger=logger,
            db=self.db)
        self.leadership.on_gain = self._on_gain
        self.leadership.on_loss = self._on_loss
        deadline = self.app.conf.beat_cron_starting_deadline
        self.dispatcher = Dispatcher(
            self.repo, self._heap_slots, feed, self.leadership, publish=self._publish_counted,
            db=self.db, broker=self.broker, logger=logger, clock=self.clock,
            instance_id=self.beatx.instance_id, max_in_flight=self.beatx.max_in_flight,
            grace=max(5.0, 2 * self.beatx.sync_interval),
            starting_deadline=float(deadline) if deadline is not None else None,
            history_keep=self.beatx.history_keep, memory_entry=self._memory.get,
            closing=lambda: self._closing, open_batch=self._publish_batch)
        self.followups = Followups(
            self.repo, self.leadership, queue=self.dispatcher.unsent.append, db=self.db,
            logger=logger, instance_id=self.beatx.instance_id, clock=self.clock)
        self.alert_engine = AlertEngine(
            self.repo, default_alerts=self.beatx.default_alerts,
            cooldown=self.beatx.alert_cooldown, logger=logger, db=self.db,
            fence=self.leadership.check_fence, instance_id=self.beatx.instance_id)
        # Background threads start with SIGTERM/SIGINT blocked (a thread inherits the mask):
        # the kernel then delivers them to the main thread only, where signals_deferred()
        # can hold them until a batch is complete.
        if self.beatx.alert_webhooks and self.webhooks is None:
            from .webhooks import WebhookSender

            with signals_deferred():
                self.webhooks = WebhookSender(self.beatx.alert_webhooks,
                                              instance_id=self.beatx.instance_id).start()
        if self.beatx.metrics_port is not None and self.metrics is None:
            from .metrics import BeatMetrics  # BeatxError when prometheus_client is missing

            self.metrics = BeatMetrics(self.repo)
            with signals_deferred():
                self.metrics.start(self.beatx.metrics_port, self.beatx.metrics_addr)
        self.leadership.maintain()

    def _ensure_setup(self) -> None:
        """Set up a scheduler built with ``lazy=True`` on its first real use."""
        if self.engine is None and not self._setting_up:
            self._setting_up = True  # a subclass's setup_schedule may call add() first
            try:
                self.setup_schedule()
            finally:
                self._setting_up = False

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
        """``beat_schedule`` plus the entries :meth:`install_default_entries` adds (Celery's
        ``celery.backend_cleanup``, or a subclass's own): beat stores them all as config."""
        entries = dict(self.app.conf.beat_schedule or {})
        collected: dict[str, Any] = {}
        self._collecting = collected
        try:
            self.install_default_entries(entries)
        finally:
            self._collecting = None
        for name, entry in collected.items():
            entries.setdefault(name, entry)
        return entries

    def sync_config(self, entries: Mapping[str, Any]) -> None:
        """Store ``beat_schedule`` entries as ``source="config"`` tasks.

        New entries are added and changed ones updated (a new version).  A config task no
        longer in the config is disabled, never deleted, and marked ``config-removed``; if
        the entry comes back it is enabled again.  Whether a config task is enabled is
        otherwise left alone, so one disabled through the admin API stays disabled across
        restarts.  A broken entry is logged and skipped; the others are still synced.
        """
        self._write(entries, strict=False, replace=True, where="beat_schedule")

    # -- Celery's runtime API: written through to the database -------------------------------

    def add(self, **kwargs: Any) -> Entry:
        """Celery's ``Scheduler.add(**entry)``: add or change the task ``name`` now.

        The entry is stored as a ``source="config"`` task, exactly like a ``beat_schedule``
        entry (see :meth:`sync_config`), and takes effect like an admin change; an existing
        task keeps its state (last run, run count).  ``last_run_at`` and
        ``total_run_count``, when given, are the state of a new task.  A task of that name
        created through the admin API is left alone (a warning is logged).

        :raises InvalidSchedule: the entry is invalid (nothing is written).
        """
        entry = self.Entry(app=self.app, **kwargs)
        state = {k: kwargs[k] for k in ("last_run_at", "total_run_count")
                 if kwargs.get(k) is not None}
        self._write({entry.name: entry}, strict=True, states={entry.name: state})  # type: ignore[dict-item]
        if self._collecting is None and entry.name in self._view:
            return self._view[entry.name]  # type: ignore[no-any-return]
        return entry

    def update_from_dict(self, dict_: Mapping[str, Any]) -> None:
        """Celery's ``update_from_dict``: add or change these entries (as :meth:`add`).

        :raises InvalidSchedule: an entry is invalid (nothing is written).
        """
        self._write(dict_, strict=True)

    def merge_inplace(self, b: Mapping[str, Any]) -> None:
        """Celery's ``merge_inplace``: the schedule becomes ``b``.

        Entries of ``b`` are added or changed (as :meth:`add`); config tasks that are not in
        ``b`` are disabled and marked ``config-removed`` (never deleted), as at start-up
        for entries removed from ``beat_schedule``.  Tasks created through the admin API are
        never changed or stopped by it.  A broken entry is logged and skipped.
        """
        self._write(b, strict=False, replace=True, where="merge_inplace")

    def reserve(self, entry: Any) -> Any:
        """The entry after a send (Celery's ``reserve``).  Beat's record step advances the
        stored state of the task, so the schedule mapping is not written here."""
        return next(entry)

    def _spec(self, name: Any, value: Any) -> _Spec:
        """Check one runtime-API (or ``beat_schedule``) entry and say how to store it."""
        validate_fields({"name": name})
        state: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        if isinstance(value, beat.ScheduleEntry):
            task, schedule, relative = value.task, value.schedule, False
            args, kwargs, options = value.args, value.kwargs, value.options
        elif isinstance(value, Mapping):
            # the shape of options, and the extra keys that have a field of ours
            extra = {k: v for k, v in config_entry_fields(value, str(name)).items()
                     if k in EXTRA_ENTRY_FIELDS}
            task, schedule = value.get("task"), value.get("schedule")
            relative = bool(value.get("relative", False))
            args, kwargs = value.get("args") or (), value.get("kwargs") or {}
            options = value.get("options") or {}
            state = {k: value[k] for k in ("last_run_at", "total_run_count")
                     if value.get(k) is not None}
        else:
            raise _Foreign()
        schedule = celery_schedule_of(schedule, relative, self.app, has_lazy(args, kwargs))
        fields, reason = stored_form(task, schedule, args, kwargs, options,
                                     self.beatx.timezone)
        fields.update(extra)
        validate_fields(fields, self.beatx.timezone)
        entry = None
        if reason is not None:
            entry = self.Entry(name=name, task=task, schedule=schedule, args=args,
                               kwargs=kwargs, options=options, app=self.app)
        return _Spec(fields, entry, state)

    def _write(self, entries: Mapping[str, Any], *, strict: bool, replace: bool = False,
               states: Mapping[str, Mapping[str, Any]] | None = None,
               where: str = "schedule", keep_foreign: bool = False) -> None:
        """Write entries through to the database as config tasks and apply them here.

        ``strict``: an invalid entry raises before anything is written (the runtime API);
        otherwise it is logged and skipped (``beat_schedule``).  ``replace``: config tasks
        not in ``entries`` are disabled (``config-removed``).  ``keep_foreign``: a value
        that is not an entry at all is kept in the mapping as given, as a dict keeps it
        (the ``schedule`` setter and item assignment), instead of being invalid.
        """
        if self._collecting is not None:
            self._collecting.update(entries)
            return
        if not isinstance(entries, Mapping):
            raise InvalidSchedule(f"schedule {entries!r:.80} is not a mapping", "schedule")
        self._ensure_setup()
        if self.admin is None:  # called by a subclass's setup_schedule before ours ran
            self._early.append((dict(entries), dict(strict=strict, replace=replace,
                                                   states=states, where=where,
                                                   keep_foreign=keep_foreign)))
            return
        specs: dict[str, _Spec] = {}
        foreign: dict[str, Any] = {}
        for name, value in entries.items():
            try:
                specs[name] = self._spec(name, value)
            except _Foreign:
                if keep_foreign:
                    foreign[name] = value
                    continue
                error = InvalidSchedule(f"entry {safe_repr(value, 80)} is not a mapping",
                                        "entry")
                if strict:
                    raise error from None
                logger.error("beat: %s entry %r is invalid and skipped: %s", where, name,
                             error)
            except Exception as exc:
                if strict:
                    raise
                logger.error("beat: %s entry %r is invalid and skipped: %s", where, name, exc)
        for name, state in (states or {}).items():
            if name in specs:
                specs[name].state.update(state)
        existing: dict[str, TaskInfo] | None = None
        if replace:
            existing = {t.name: t for source in (CONFIG, CONFIG_REMOVED)
                        for t in self.admin.list(source=source)}
        touched: set[str] = set()
        for name, spec in specs.items():
            try:
                current = existing.get(name) if existing is not None else self._task(name)
                self._write_one(name, spec, current)
            except TaskExists:
                self._memory.pop(name, None)
                logger.warning("beat: %s entry %r is ignored: a task of that name was added "
                               "through the admin API", where, name)
            except Exception as exc:
                if strict:
                    raise
                logger.error("beat: %s entry %r is invalid and skipped: %s", where, name, exc)
            else:
                touched.add(name)
        if existing is not None:
            for name, info in existing.items():
                if info.source == CONFIG and name not in entries:
                    logger.info("beat: %r left %s; disabling it", name, where)
                    self.admin._set_source(name, CONFIG_REMOVED, enabled=False)
                    touched.add(name)
            for name in [n for n in self._memory if n not in entries]:
                del self._memory[name]
            self._foreign = {n: v for n, v in self._foreign.items() if n in entries}
        if foreign:
            self._drop([n for n in foreign if n not in self._foreign], refresh=False)
            for name, value in foreign.items():
                logger.error("beat: %s entry %r is %s, not an entry: it is kept as given "
                             "(as Celery keeps it) and never sent", where, name,
                             safe_repr(value, 80))
                self._foreign[name] = value
            touched.update(foreign)
        self._refresh_local(touched)

    def _task(self, name: str) -> TaskInfo | None:
        assert self.admin is not None
        try:
            return self.admin.get(name)
        except TaskNotFound:
            return None

    def _write_one(self, name: str, spec: _Spec, current: TaskInfo | None) -> None:
        assert self.admin is not None
        admin = self.admin
        fields = dict(spec.fields)
        if current is None:
            admin.add(name, fields.pop("task"), fields.pop("schedule"), source=CONFIG,
                      **fields)
            if spec.state:
                admin._seed_state(name, **spec.state)
        else:
            if current.source not in (CONFIG, CONFIG_REMOVED):
                raise TaskExists(f"task {name!r} exists already")
            wanted = dict(DEFAULTS)
            wanted.update(validate_fields(fields, self.beatx.timezone))
            definition = current.definition()
            if any(definition.get(k) != v for k, v in wanted.items()):
                admin.update(name, **fields)
            if current.source == CONFIG_REMOVED:
                logger.info("beat: %r is back in the schedule; enabling it", name)
                admin._set_source(name, CONFIG, enabled=True)
        self._foreign.pop(name, None)
        if spec.entry is not None:
            self._memory[name] = spec.entry
        else:
            self._memory.pop(name, None)

    def _drop(self, names: list[str], refresh: bool = True) -> None:
        """Take tasks out of the schedule (Celery's ``del schedule[name]``): a config task is
        disabled and marked ``config-removed``; a task of the admin API is left alone."""
        assert self.admin is not None
        touched = set()
        for name in names:
            self._foreign.pop(name, None)
            self._memory.pop(name, None)
            info = self._task(name)
            if info is None:
                continue
            if info.source == CONFIG:
                logger.info("beat: %r was removed from the schedule; disabling it", name)
                self.admin._set_source(name, CONFIG_REMOVED, enabled=False)
                touched.add(name)
            elif info.source != CONFIG_REMOVED:
                logger.warning("beat: %r is not removed from the schedule: it was added "
                               "through the admin API", name)
        if refresh:
            self._refresh_local(touched)

    def _refresh_local(self, names: set[str]) -> None:
        """Apply the stored rows of ``names`` to this beat at once (not at the next poll):
        Celery's API is synchronous."""
        if self.feed is None:  # set-up: the tasks are loaded afterwards; only anchors
            names = {n for n in names if n in self._memory}
        if not names:
            return
        assert self.repo is not None
        marks: dict[str, str | None] = {}
        with self.repo.transaction(readonly=True) as session:
            rows = {row.name: row for row in self.repo.get_tasks(session, sorted(names))}
            for name in names:
                row = rows.get(name)
                entry = self._memory.get(name)
                if entry is not None and row is not None and \
                        isinstance(row.created_at, datetime):
                    # A Celery entry that never ran counts from when its task was created.
                    entry._anchor = row.created_at  # type: ignore[attr-defined]
                if self.feed is None:
                    continue
                if row is None:
                    self._heap_slots.remove(name)
                else:
                    self.feed.apply_row(row, marks)
        if self.feed is not None:
            self.feed.save_marks(marks)

    # -- leadership ----------------------------------------------------------------------

    def _on_gain(self) -> None:
        """Leader (or single): load every enabled task and take over orphaned runs."""
        assert self.feed is not None and self.dispatcher is not None
        if self.alert_engine is not None:
            self.alert_engine.reset()
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
        assert self.dispatcher is not None and self.leadership is not None
        self.dispatcher.drop()
        if self.followups is not None:
            self.followups.reset()
        if self.alert_engine is not None:
            self.alert_engine.leader_lost(self.leadership.last_loss, self.clock())

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
        if self.metrics is not None:
            self.metrics.observe_poll()
        return count

    def tick(self, *args: Any, **kwargs: Any) -> float:  # type: ignore[override]
        """One iteration: keep the lease, read changes, send what is due.

        Returns how long to sleep, as Celery's does: 0 after handling due tasks (to come
        straight back), else the time to the next fire time or check (less Celery's 10 ms
        drift, :meth:`adjust`), at most :attr:`max_interval`.
        """
        if self.metrics is None:
            return self._tick()
        with self.metrics.timed_tick():
            return self._tick()

    def _tick(self) -> float:
        """The body of :meth:`tick` (timed by the metrics, when they are on)."""
        self._ensure_setup()
        if self._closing:
            # Closed by the shutdown signal handler while a driver swallowed its SystemExit.
            raise SystemExit()
        self._checked = {}
        started = time.monotonic()
        leadership, dispatcher = self.leadership, self.dispatcher
        assert leadership is not None and dispatcher is not None
        self._check_clock()
        with signals_deferred():
            leadership.maintain()
        if self.metrics is not None:
            self.metrics.set_role(leadership.role)
        if not leadership.may_send():
            if dispatcher.unconfirmed and self.db.ready():
                # Marks of messages published before the lease was lost (a database
                # outage): written as soon as the database answers.
                with signals_deferred():
                    dispatcher.flush()
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
        if not leadership.may_send():  # a fenced write there found the lease gone
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
        # Outcomes (failures to retry, buffered runs) are read at the pace of the change
        # poll, timed from the tick's start like it: stamped after the poll, a read would
        # just miss its time at the next wake-up and wait a whole extra sleep.
        paced = started - self._last_followup >= interval
        if paced or self.followups.retry_due(now):
            if paced:  # a read for a due retry keeps the pace where it was
                self._last_followup = started
            with signals_deferred():
                self.followups.run(now)
        self._watch(now, interval)
        # A shutdown signal waits for the batch under way (record, publish, confirm: well
        # under a second), so a clean stop leaves no run recorded and not sent.
        if dispatcher.unsent:
            with signals_deferred():
                sent = dispatcher.drain_unsent()
            return 0.0 if sent or dispatcher.unsent else self._wait()
        due = self._heap_slots.pop_due(now.timestamp(), dispatcher.batch_size)
        plans: dict[str, DuePlan] = {}
        ran_at: dict[str, datetime] = {}
        if len(due) < dispatcher.batch_size:
            due += self._memory_due(dispatcher.batch_size - len(due), plans, ran_at)
        if not due:
            return self._wait()
        with signals_deferred():
            dispatcher.dispatch(due, now, plans=plans, ran_at=ran_at)
        if self.db.down or self.broker.down or not leadership.may_send():
            return self._wait()
        return 0.0

    def _watch(self, now: datetime, interval: float) -> None:
        """The leader's watch over outcomes: mark stuck runs (every :data:`RECOVER_EVERY`
        seconds) and evaluate the alert rules on what happened since last time (every
        sync interval; a few cheap queries when nothing did)."""
        mono = time.monotonic()
        if mono - self._last_stuck >= RECOVER_EVERY:
            self._last_stuck = mono
            self._mark_stuck(now)
        if mono - self._last_alert_prune >= PRUNE_ALERTS_EVERY:
            self._last_alert_prune = mono
            self._prune_alerts(now)
        if self.alert_engine is not None and mono - self._last_alerts >= interval:
            self._last_alerts = mono
            with signals_deferred():
                alerts = self.alert_engine.evaluate(now)
            if self.metrics is not None:
                for alert in alerts or ():
                    self.metrics.observe_alert(alert)

    def _prune_alerts(self, now: datetime) -> None:
        """Delete resolved alerts older than ``beatx_alerts_keep_days`` (0: keep all)."""
        assert self.repo is not None and self.leadership is not None
        days = self.beatx.alerts_keep_days
        if not days:
            return
        pruned, started = 0, time.monotonic()
        try:
            while True:  # small transactions: the lease row is locked while each runs
                with self.repo.transaction() as session:
                    self.leadership.check_fence(session)
                    done = self.repo.prune_alerts(session, now - timedelta(days=days),
                                                  PRUNE_ALERTS_BATCH)
                pruned += done
                if done < PRUNE_ALERTS_BATCH:
                    break
                if time.monotonic() - started > PRUNE_ALERTS_BUDGET:
                    # A backlog (the first prune after an upgrade): go on at the next watch.
                    self._last_alert_prune = float("-inf")
                    break
        except Fenced:
            self.leadership.lost_fence()
            return
        except Exception as exc:
            self.db.failed(exc, "pruning old alerts")
            return
        if pruned:
            logger.info("beat: deleted %d resolved alert(s) older than %g day(s)", pruned,
                        days)

    def _mark_stuck(self, now: datetime) -> None:
        """Runs sent but not started, or started but not finished, for longer than their
        task's ``alerts.stuck_seconds`` (or the default's) become ``stuck``."""
        assert self.repo is not None and self.leadership is not None
        default = getattr(self.beatx.default_alerts, "stuck_seconds", None)
        try:
            with signals_deferred(), self.repo.transaction() as session:
                self.leadership.check_fence(session)
                thresholds = self.repo.stuck_thresholds(session)
                if not thresholds and default is None:
                    return
                marked = self.repo.mark_stuck(session, now, thresholds, default)
        except Fenced:
            self.leadership.lost_fence()
            return
        except Exception as exc:
            self.db.failed(exc, "marking stuck runs")
            return
        for name, task_id, previous in marked:
            logger.warning("beat: run %s of %r is stuck (still %s after its stuck_seconds)",
                           task_id, name, previous)

    def _memory_due(self, limit: int, plans: dict[str, DuePlan],
                    ran_at: dict[str, datetime]) -> list[Slot]:
        """Ask the tasks driven in memory whose next check has come whether they are due
        (Celery's ``is_due`` hook, then the schedule object's own ``is_due()``), each in its
        schedule's own clock.

        A due one gets a plan of one send, scheduled at the time it fell due (the instant,
        by its clock, of the check that found it due: its task id derives from it), and its
        last run is that time too, as Celery's ``reserve`` records it.
        """
        out: list[Slot] = []
        for slot in list(self._heap_slots.memory.values()):
            if len(out) >= limit:
                break
            entry = self._synced(slot)
            now = None
            try:
                now = _aware_utc(entry.default_now())
                if slot.next_at is not None and slot.next_at > now + _EARLY:
                    continue
                is_due, nxt = self.is_due(entry)
                # Read the clock again, as Celery's reserve does after is_due(): the run's
                # time must not be before the instant is_due() judged.
                now = _aware_utc(entry.default_now())
            except Exception as exc:  # one broken schedule object must not stop beat
                self._memory_failed(slot, now, exc)
                continue
            if self._failing.pop(slot.name, None) is not None:
                logger.info("beat: %r answers is_due() again", slot.name)
                if self.feed is not None:
                    self.feed.save_marks({slot.name: None})
            delay = _seconds(nxt, float(self.max_interval))
            self._checked[slot.name] = delay
            following = now + timedelta(seconds=delay)
            if not is_due:
                slot.next_at = following
                continue
            plans[slot.name] = DuePlan(((now, SCHEDULED),), max(following, now + _TICK))
            ran_at[slot.name] = now
            out.append(slot)
        return out

    def _memory_failed(self, slot: Slot, now: datetime | None, exc: Exception) -> None:
        """An in-memory entry's clock or ``is_due()`` raised: ask again after
        :attr:`max_interval`, as Celery does.  The first failure (and each new error) is
        logged with its traceback and marks the task invalid (a critical alert); the same
        error again is only logged at debug level.  The mark is cleared when it answers."""
        reason = f"is_due() raised {type(exc).__name__}: {exc}"
        wait = float(self.max_interval)
        slot.next_at = now + timedelta(seconds=wait) if now is not None else None
        self._checked[slot.name] = wait
        if self._failing.get(slot.name) == reason:
            logger.debug("beat: %r: %s (again)", slot.name, reason)
            return
        self._failing[slot.name] = reason
        logger.error("beat: cannot ask %r whether it is due; trying again every %g s: %s",
                     slot.name, wait, reason, exc_info=exc)
        if self.feed is not None:
            self.feed.save_marks({slot.name: reason})

    def _wait(self) -> float:
        """How long the loop may sleep: until the next fire time or check, the next change
        poll, or the next lease or retry action, whichever is first, and at most
        :attr:`max_interval`.

        A chore (poll, lease, retry) due within the last 30 % of ``max_interval`` waits for
        it instead of cutting the sleep short: ticks come at least every ``max_interval``,
        which is never longer than the sync interval, so it is only done that much later.
        """
        cap = float(self.max_interval)
        leadership = self.leadership
        sending = leadership is not None and leadership.may_send()
        chores: list[float] = []
        if leadership is not None:
            chores.append(leadership.wait())
        if sending:
            chores.append(self.beatx.sync_interval - (time.monotonic() - self._last_poll))
        blocked = False
        for outage in (self.db, self.broker):
            if outage.down:
                chores.append(outage.wait())
                blocked = True
        # The slack never delays a lease renewal by more than a sixth of the lease (its
        # safety margin is a third), whatever the sync interval.
        slack = min(CHORE_SLACK, self.beatx.lease_seconds / (6 * cap)) if cap > 0 else 0.0
        waits = [cap] + [w for w in chores if w < cap * (1 - slack)]
        if sending and not blocked:
            nxt = self._heap_slots.next_fire()
            if nxt is not None:
                waits.append(nxt - self.clock().timestamp())
            retry = self.followups.next_retry_at if self.followups is not None else None
            if retry is not None:
                waits.append((retry - self.clock()).total_seconds())
            waits.extend(self._memory_waits())
        return max(min(waits), 0.0)

    def _memory_waits(self) -> list[float]:
        """Seconds to the next check of each task driven in memory, adjusted as Celery does."""
        out = []
        for slot in self._heap_slots.memory.values():
            delay = self._checked.get(slot.name)
            if delay is None:
                if slot.next_at is None:
                    out.append(0.0)
                    continue
                try:
                    now = _aware_utc(slot.entry.default_now())
                except Exception:
                    continue
                delay = (slot.next_at - now).total_seconds()
            out.append(self.adjust(delay))
        return out

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
        for slot in self._heap_slots.memory.values():
            slot.next_at = None  # ask Celery's is_due() again at once
        self._heap_slots.rebuild()
        if changed:
            try:
                with signals_deferred(), self.repo.transaction() as session:
                    self.repo.save_states(session, changed)
            except Exception as exc:
                self.db.failed(exc, "saving next runs after a clock jump")

    # -- sending through Celery ------------------------------------------------------------

    def _publish_counted(self, definition: Any, send: Send) -> tuple[str, Any]:
        outcome = self._publish(definition, send)
        if self.metrics is not None:
            self.metrics.observe_send(outcome[0], send.scheduled_at, self.clock())
        return outcome

    def _publish(self, definition: Any, send: Send) -> tuple[str, Any]:
        """Send one recorded run through ``apply_entry`` (Celery's chain); classify the
        outcome for the dispatcher."""
        try:
            entry = self._send_entry(definition, send)
        except Exception as exc:
            return FAILED, f"{type(exc).__name__}: {exc}"
        with signals_deferred():  # inside a batch (already deferred): no system call
            try:
                producer = self.producer
            except Exception as exc:  # no connection to the broker: nothing can be sent
                return BROKER_DOWN, exc
            self._outcome = _MISSING
            self.apply_entry(entry, producer=producer)
        outcome, self._outcome = self._outcome, _MISSING
        if outcome is _MISSING:
            return DROPPED, "apply_entry returned without sending (a subclass override)"
        if isinstance(outcome, BaseException):
            if self._closing:  # the driver turned our shutdown into an error of its own
                raise SystemExit() from outcome
            if self._is_connection_error(outcome):
                return BROKER_DOWN, outcome
            if _from_kombu_batch(outcome):
                return BATCH_REFUSED, outcome
            return FAILED, f"{type(outcome).__name__}: {outcome}"
        return SENT, None

    def _publish_batch(self, size: int) -> _TransportBatch | None:
        """A transport batch for the next ``size`` publishes, or ``None``.

        kombu's ``Producer.batch`` (kombu 5.7) buffers the messages that Celery's chain
        publishes through :attr:`producer` and sends them together: on Redis one pipeline
        instead of a client and a round trip per message (about twice the sends per
        second).  ``None`` where kombu or the transport has no batches (RabbitMQ), or when
        there is no producer (the first publish then reports the broker down).
        """
        try:
            with signals_deferred():
                producer = self.producer
            if not callable(getattr(producer, "batch", None)) or \
                    not producer.supports_batch_publish:
                return None
            # Never flushed inside a publish (where a failure would look like the failure
            # of one message): the chunk flushes it, once.
            return _TransportBatch(producer.batch(max_size=UNBOUNDED_BATCH),
                                   self._is_connection_error)
        except Exception:
            return None

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
        fields = definition.fields
        options = send_options(fields)
        headers = dict(options.pop("headers", None) or {})
        headers["beatx_run"] = run
        options.update(task_id=send.task_id, headers=headers)
        # A task never run before shows this run's scheduled time as its last run (not
        # "now" by its Celery schedule's clock, which costs a time-zone conversion per send).
        return self.Entry(name=send.name, task=fields["task"], args=fields["args"],
                          kwargs=fields["kwargs"], options=options, app=self.app,
                          last_run_at=definition.last_run_at or send.scheduled_at,
                          total_run_count=definition.total_run_count,
                          schedule=None if fields["calendar"] else
                          self._celery_schedule(
                              definition.schedule if definition.schedule is not None
                              else load_schedule(fields["schedule"])[0]))

    def _celery_schedule(self, schedule: Any) -> Any:
        """The Celery schedule object equal to a parsed schedule, for code that reads
        ``entry.schedule`` in ``apply_entry`` (Sentry's beat monitoring does); ``None``
        when Celery has no equivalent.  One object per distinct schedule."""
        if schedule is None:
            return None
        # By identity first (parsed schedules are shared, see ``schedule_from_json``):
        # hashing one serialises it.  The identity map holds the schedule, so its id is not
        # reused while it is a key.
        known = self._equivalents_by_id.get(id(schedule))
        if known is not None:
            return known[1]
        if len(self._equivalents_by_id) > 4096:
            # Both at once: an object still in one map would not be shared with an equal
            # schedule that comes later.
            self._equivalents.clear()
            self._equivalents_by_id.clear()
        found = self._equivalents.get(schedule, _MISSING)
        if found is _MISSING:
            found = self._equivalents[schedule] = celery_equivalent(
                schedule, self.app, self.beatx.timezone)
        self._equivalents_by_id[id(schedule)] = (schedule, found)
        return found

    def _ensure_connected(self) -> Any:
        """Connect to the broker for :attr:`producer` with one bounded attempt.

        Celery's tries ``broker_connection_max_retries`` times (100) with sleeps growing to
        30 s, all inside one tick, so a beat started while the broker is down would hold
        its lease, its change feed and its database work for minutes.  Here a failed
        attempt raises at once; the outage back-off decides when to try again.
        """
        def retrying(exc: BaseException, interval: float) -> None:
            logger.debug("beat: broker connection failed (%s); one more try", exc)

        timeout = self.app.conf.broker_connection_timeout
        return self.connection.ensure_connection(
            retrying, 1, interval_start=0, interval_step=0,
            timeout=float(timeout) if timeout else 4.0)

    def _is_connection_error(self, exc: BaseException) -> bool:
        kinds: tuple[type[BaseException], ...] = (
            OSError, socket.timeout, KombuOperationalError)
        try:
            kinds += tuple(self.connection.connection_errors)
        except Exception:
            pass
        return any(isinstance(e, kinds) for e in _chain(exc))

    def _probe_broker(self) -> bool:
        """One bounded connection attempt while the broker is down; True when it answers.

        The cached producer and connection are dropped first and built again through
        :attr:`producer` (that is, :meth:`_ensure_connected`), so the probe and the sends
        share one connect path and a probe that succeeds leaves a warm producer behind.
        """
        self._drop_producer()
        try:
            with signals_deferred():
                self.producer  # noqa: B018 -- builds and caches the connection
        except Exception as exc:
            self._drop_producer()
            self.broker.failed(exc, "sending due tasks", unreachable=True)
            return False
        self.broker.succeeded()
        return True

    def _drop_producer(self) -> None:
        """Forget the cached producer and release its connection."""
        self.__dict__.pop("producer", None)
        old = self.__dict__.pop("connection", None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.release()

    # -- Celery's Scheduler interface ----------------------------------------------------

    def _synced(self, slot: Slot) -> Entry:
        """The in-memory entry of ``slot`` with the task's state (as Celery's entry holds
        it: a task that never ran counts from when it was created)."""
        entry: Entry = slot.entry
        entry.last_run_at = slot.last_run_at or getattr(entry, "_anchor", None) \
            or entry.last_run_at
        entry.total_run_count = slot.runs
        entry.next_run_at = slot.next_at
        return entry

    def _entry_for(self, name: str) -> Entry:
        slot = self._heap_slots.get(name)
        if slot is not None and slot.entry is not None:
            return self._synced(slot)
        assert self.admin is not None
        info = self.admin.get(name)
        entry = self.Entry.from_info(info, app=self.app,
                                     schedule=slot.schedule if slot else None)
        if slot is not None:
            entry.next_run_at = slot.next_at
        return entry

    def get_schedule(self) -> MutableMapping[str, Any]:
        """The schedule (see :class:`_ScheduleView`)."""
        return self._view

    def set_schedule(self, schedule: Any) -> None:
        """Celery's ``scheduler.schedule = mapping``: the schedule becomes ``mapping``
        (written through as :meth:`merge_inplace` does)."""
        if schedule is self._view:
            return
        self._write(schedule, strict=False, replace=True, where="schedule",
                    keep_foreign=True)

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
            if self.webhooks is not None:
                self.webhooks.close()
            if self.metrics is not None:
                self.metrics.close()
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

