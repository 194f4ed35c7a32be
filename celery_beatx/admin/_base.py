"""What every part of :class:`~celery_beatx.BeatAdmin` shares: the engine, transactions,
the clock, and the validated write path for task definitions."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ..clock import Clock, utcnow
from ..config import DEFAULT_SYNC_INTERVAL, BeatxConfig
from ..definitions import DEFAULTS, DEFINITION_FIELDS, effective_schedule, validate_fields
from ..errors import BeatxError, DependencyCycle, InvalidSchedule, TaskNotFound, WriteConflict
from ..migrate import ensure_schema
from ..schedules import BaseSchedule, schedule_from_dict
from ..schedules.memory import MEMORY_GUARDED_FIELDS, in_memory_refusal, is_in_memory
from ..store.engine import conflict_kind, make_engine
from ..store.models import Task, version_stamp
from ..store.repository import Repository
from ..store.rows import definition_of, load_schedule
from ..values import decode_expires

UTC = timezone.utc
T = TypeVar("T")

#: How many times one admin call runs its transaction when the database aborts it for a
#: concurrent one (a deadlock or serialization failure), before raising WriteConflict.
WRITE_ATTEMPTS = 6


def first_run_at(schedule: BaseSchedule, now: datetime,
                 last_run_at: datetime | None = None, *,
                 changed: bool = False) -> datetime | None:
    """When a task (new, changed or re-enabled) should next run.

    A task that never ran: its schedule's first time after ``now``.  A task whose schedule
    ``changed``: its next time after the last run under the new schedule, as Celery and
    django-celery-beat compute it; when that is already past the task is due at once, and
    its catch-up policy decides how many of the missed occurrences run.  A task re-enabled:
    its next time after ``now``.  Never at or before its last run, even when this process's
    clock is behind beat's.  ``None`` for a schedule held in beat's memory (beat asks the
    object itself).
    """
    if getattr(schedule, "in_memory", False):
        return None
    if last_run_at is None:
        return schedule.initial_run_at(now)
    if changed:
        return schedule.next_after(last_run_at, last_run_at)
    return schedule.next_after(max(now, last_run_at), last_run_at)


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle in ``graph`` (node -> nodes it depends on) as a path, or None."""
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = grey
        stack.append(node)
        for nxt in graph.get(node, ()):
            state = color.get(nxt, white)
            if state == grey:
                return stack[stack.index(nxt):] + [nxt]
            if state == white:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for start in sorted(graph):
        if color.get(start, white) == white:
            found = visit(start)
            if found:
                return found
    return None


class AdminBase:
    """Connection, clock and shared write helpers of :class:`~celery_beatx.BeatAdmin`.

    :param app: a Celery app; its ``beatx_*`` settings choose the database.
    :param url: a database URL, instead of ``app``.
    :param engine: an existing SQLAlchemy engine, instead of either.
    :param auto_migrate: upgrade an empty or old schema on first use (default: the app's
        ``beatx_auto_migrate``, else ``True``); when off, an old schema raises
        :class:`~celery_beatx.errors.SchemaOutOfDate`.
    :param clock: returns the current aware time; injected by tests.
    :param instance_id: who makes the changes (recorded in versions and locks).
    """

    def __init__(
        self,
        app: Any = None,
        *,
        url: str | None = None,
        engine: Engine | None = None,
        auto_migrate: bool | None = None,
        clock: Clock = utcnow,
        instance_id: str | None = None,
    ) -> None:
        config = BeatxConfig.from_app(app) if app is not None else None
        if engine is None:
            url = url or (config.database_url if config else None)
            if url is None:
                raise BeatxError("BeatAdmin needs an app, a url or an engine")
            engine = make_engine(url, config.engine_options if config else None)
        self.app = app
        #: Whether this app records run outcomes (``None``: not known, no app given).
        self.track_results = config.track_results if config else None
        self.engine = engine
        self.repo = Repository(engine)
        self.timezone = config.timezone if config else "UTC"
        self.auto_migrate = (config.auto_migrate if config else True) \
            if auto_migrate is None else auto_migrate
        self.clock = clock
        self.instance_id = instance_id or (config.instance_id if config else None)
        #: ``beatx_default_alerts`` and ``beatx_sync_interval`` of the app (health reads them).
        self.default_alerts = config.default_alerts if config else None
        self.sync_interval = config.sync_interval if config else DEFAULT_SYNC_INTERVAL
        self._schema_checked = False
        #: Set by beat, which writes the description of entries it drives in memory.
        self._writes_memory_entries = False

    # -- plumbing ------------------------------------------------------------------------

    def _tx(self, readonly: bool = False):  # type: ignore[no-untyped-def]
        if not self._schema_checked:
            ensure_schema(self.engine, self.auto_migrate)
            self._schema_checked = True
        return self.repo.transaction(readonly=readonly)

    def _write(self, body: Callable[[Session], T]) -> T:
        """Run ``body`` in one write transaction, again from the start when the database
        aborted it because of a concurrent writer (each attempt re-reads what it changes).

        :raises WriteConflict: it kept being aborted, or a lock wait ran out; nothing was
            written.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._tx() as session:
                    self.repo.lock_feed(session)
                    return body(session)
            except Exception as exc:
                kind = conflict_kind(exc)
                if kind is None:
                    raise
                if kind == "busy":
                    raise WriteConflict(f"the database is busy: a lock this change needs was "
                                        f"held too long ({_reason(exc)}); nothing was "
                                        "written") from exc
                if attempt == WRITE_ATTEMPTS:
                    raise WriteConflict(f"concurrent changes aborted this one {attempt} times "
                                        f"({_reason(exc)}); nothing was written") from exc
                time.sleep(random.uniform(0, 0.02 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise InvalidSchedule("clock returned a naive datetime", "now")
        return now.astimezone(UTC)

    def _row(self, session: Session, name: str, *, for_update: bool = False) -> Task:
        if for_update:
            self.repo.lock_feed(session)
        row = self.repo.get_task(session, name, for_update=for_update)
        if row is None:
            raise TaskNotFound(f"task {name!r} does not exist")
        return row

    def _prepare(self, name: str, task: str, schedule: Any, fields: Mapping[str, Any],
                 enabled: bool, now: datetime) -> dict[str, Any]:
        spec = dict(DEFAULTS)
        spec.update(fields)
        spec.update(name=name, task=task, schedule=schedule, enabled=enabled)
        out = validate_fields(spec, self.timezone, now)
        self._check_in_memory(out)
        self._check_outcomes_needed(out)
        return out

    def _check_outcomes_needed(self, fields: Mapping[str, Any]) -> None:
        """Refuse policies that act on run outcomes when the app records none.

        ``overlap`` and ``depends_on`` decide from what runs did; with
        ``beatx_track_results`` off nothing records that, and they would silently never
        send (or always wait).  Without an app the setting is not known here; ``health()``
        reports such tasks instead.
        """
        if self.track_results is not False:
            return
        if fields.get("overlap", "allow") != "allow":
            raise InvalidSchedule(
                f"overlap {fields['overlap']!r} needs run outcomes, but beatx_track_results "
                "is off: turn it on and call celery_beatx.track(app) in the app module",
                "overlap")
        if fields.get("depends_on"):
            raise InvalidSchedule(
                "depends_on needs run outcomes, but beatx_track_results is off: turn it on "
                "and call celery_beatx.track(app) in the app module", "depends_on")

    def _check_in_memory(self, definition: Mapping[str, Any],
                         changed: Sequence[str] = ()) -> None:
        """Refuse what a task driven by an in-memory Celery schedule would store and ignore:
        a policy its ``is_due()`` cannot follow, or (outside beat) a change of what beat
        sends from memory."""
        if not is_in_memory(definition.get("schedule")):
            return
        field = in_memory_refusal(definition)
        if field is None and not self._writes_memory_entries:
            field = next((f for f in changed if f in MEMORY_GUARDED_FIELDS), None)
        if field is not None:
            raise InvalidSchedule(
                f"{field}: task {definition.get('name')!r} is driven by a Celery schedule "
                "object in beat's memory (from beat_schedule); its is_due() decides when it "
                "runs and what is sent comes from that entry: change it in the "
                "configuration", field)

    def _check_dependencies(self, session: Session, new_edges: Mapping[str, Sequence[str]],
                            known: set[str]) -> None:
        """Refuse unknown dependency targets and cycles (naming the cycle)."""
        for name, deps in new_edges.items():
            missing = [d for d in deps if d not in known]
            if missing:
                raise TaskNotFound(f"task {name!r} depends on unknown task {missing[0]!r}")
        graph: dict[str, list[str]] = {}
        for a, b in self.repo.dependency_edges(session):
            graph.setdefault(a, []).append(b)
        for name, deps in new_edges.items():
            graph[name] = list(deps)
        cycle = find_cycle(graph)
        if cycle:
            raise DependencyCycle("dependency cycle: " + " -> ".join(cycle))

    def _insert(self, session: Session, specs: Sequence[tuple[dict[str, Any], str]],
                now: datetime, revision: int,
                states: Mapping[str, Mapping[str, Any]] | None = None) -> list[Any]:
        """Insert validated specs with executemany statements (no ORM objects); returns
        row-like views of what was inserted (``loaded``: the parsed schedule, for
        :func:`info_from_row`).  ``states``: state columns per name (import).

        Version 1 is the row itself: no snapshot is written until it is superseded.
        """
        rows: list[dict[str, Any]] = []
        views: list[Any] = []
        # The first run of a new task depends only on its schedule and ``now``: computed once
        # per distinct schedule object (equal schedules share one) when there is no calendar.
        first_runs: dict[int, tuple[BaseSchedule, datetime | None]] = {}
        for spec, source in specs:
            # equal stored schedules share one parsed object (load_schedule caches)
            loaded = load_schedule(spec["schedule"])
            schedule = loaded[0]
            if schedule is None:  # validated before: cannot happen short of a bug
                schedule = schedule_from_dict(spec["schedule"])
            if not spec["calendar"]:
                # (the schedule is kept with its first run, so its id is not reused)
                known = first_runs.get(id(schedule))
                if known is None:
                    known = first_runs[id(schedule)] = (schedule, first_run_at(schedule, now))
                next_run_at = known[1]
            else:
                next_run_at = first_run_at(effective_schedule(schedule, spec["calendar"]), now)
            values: dict[str, Any] = {k: spec[k] for k in DEFINITION_FIELDS if k != "expires"}
            values.update(
                name=spec["name"], enabled=spec["enabled"], source=source, version=1,
                last_run_at=None, total_run_count=0, next_run_at=next_run_at,
                # version 1 is made with the task: its time and comment are not stored
                # (see version_stamp)
                revision=revision, created_at=now, updated_at=now, version_at=None,
                version_by=self.instance_id, version_comment=None, invalid_reason=None,
                paused_reason=None, paused_by=None, paused_at=None)
            values.update((states or {}).get(spec["name"], {}))
            view = SimpleNamespace(**values, expires=spec["expires"], loaded=loaded)
            # ``expires`` is seconds or an absolute time: two columns (see Task.expires)
            expires = spec["expires"]
            absolute = isinstance(expires, dict)
            values["expires_seconds"] = None if absolute else expires
            values["expires_at"] = decode_expires(expires) if absolute else None
            rows.append(values)
            views.append(view)
        self.repo.insert_tasks(session, rows)
        return views

    def _apply(self, session: Session, row: Task, changes: Mapping[str, Any], now: datetime,
               comment: str, revision: int | None = None) -> bool:
        """Apply validated ``changes`` to ``row``; returns whether anything changed.

        ``revision``: the change revision to stamp (batch calls take one for all rows).
        """
        before = definition_of(row)
        was_enabled = row.enabled
        for key, value in changes.items():
            setattr(row, key, value)
        after = definition_of(row)
        changed_definition = before != after
        if is_in_memory(before["schedule"]) or is_in_memory(after["schedule"]):
            self._check_in_memory(dict(after, name=row.name),
                                  [k for k in after if before[k] != after[k]])
        if not changed_definition and row.enabled == was_enabled:
            return False
        if changed_definition:
            # The version being superseded becomes a snapshot; the new one is the row.
            self.repo.keep_version(session, row.name, row.version, before,
                                   *version_stamp(row))
            row.version += 1
            row.version_at, row.version_by, row.version_comment = \
                now, self.instance_id, comment
            if "depends_on" in changes:
                self.repo.set_dependencies(session, row.name, row.depends_on)
        timing = ("schedule", "calendar")
        retimed = any(before[k] != after[k] for k in timing)
        if retimed or (row.enabled and not was_enabled):
            schedule, problem = load_schedule(row.schedule)
            row.invalid_reason = problem
            row.next_run_at = first_run_at(effective_schedule(schedule, row.calendar), now,
                                           row.last_run_at, changed=retimed) \
                if schedule else None
        row.revision = revision if revision is not None else self.repo.next_revision(session)
        row.updated_at = now
        return True


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return f"{type(orig or exc).__name__}: {text[0] if text else ''}"[:200]
