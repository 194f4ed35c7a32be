"""``BeatAdmin``: the Python admin API over the schedule database.

Every public call is one database transaction; batch calls are all-or-nothing.  Input is
validated completely before anything is written.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .alerts import LEVELS, Alert
from .config import BeatxConfig
from .definitions import (
    DEFAULTS,
    DEFINITION_FIELDS,
    TaskInfo,
    effective_schedule,
    validate_fields,
)
from .errors import (
    BeatxError,
    DependencyCycle,
    InvalidSchedule,
    TaskExists,
    TaskNotFound,
    VersionNotFound,
)
from .migrate import ensure_schema
from .schedules import BaseSchedule, schedule_from_dict
from .schedules.base import require_aware
from .store.engine import make_engine
from .store.models import Task
from .store.repository import Repository

UTC = timezone.utc
EXPORT_FORMAT = "celery-beatx/1"
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Version:
    """One stored version of a task's definition."""

    version: int
    definition: dict[str, Any]
    created_at: datetime
    created_by: str | None
    comment: str


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


def load_schedule(data: Mapping[str, Any]) -> tuple[BaseSchedule | None, str | None]:
    """Load a stored schedule; on failure return ``(None, reason)`` instead of raising.

    Schedules are immutable, so equal stored forms share one parsed object: beat start-up
    with thousands of tasks parses each distinct schedule once.
    """
    try:
        key = json.dumps(data, sort_keys=True)
    except (TypeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return _load_schedule_cached(key)


@functools.lru_cache(maxsize=4096)
def _load_schedule_cached(key: str) -> tuple[BaseSchedule | None, str | None]:
    try:
        return schedule_from_dict(json.loads(key)), None
    except Exception as exc:  # a broken row must never stop a listing or beat
        return None, f"{type(exc).__name__}: {exc}"


def definition_of(row: Task) -> dict[str, Any]:
    """The stored definition of a task row (what a version snapshot holds)."""
    return {key: getattr(row, key) for key in DEFINITION_FIELDS}


def info_from_row(row: Task, loaded: tuple[BaseSchedule | None, str | None] | None = None
                  ) -> TaskInfo:
    """Build the public :class:`TaskInfo` for a task row (``loaded``: its parsed schedule)."""
    schedule, problem = loaded if loaded is not None else load_schedule(row.schedule)
    fields = definition_of(row)
    fields.pop("schedule")
    return TaskInfo(
        name=row.name,
        schedule=schedule,
        schedule_dict=dict(row.schedule),
        enabled=row.enabled,
        source=row.source,
        version=row.version,
        last_run_at=row.last_run_at,
        total_run_count=row.total_run_count,
        next_run_at=row.next_run_at,
        invalid_reason=row.invalid_reason or problem,
        revision=row.revision,
        **fields,
    )


def first_run_at(schedule: BaseSchedule, now: datetime,
                 last_run_at: datetime | None = None) -> datetime | None:
    """When a task (new, changed or re-enabled) should next run.

    Never at or before its last run, even when this process's clock is behind beat's.
    """
    if last_run_at is None:
        return schedule.initial_run_at(now)
    return schedule.next_after(max(now, last_run_at), last_run_at)


class BeatAdmin:
    """Change schedules while beat runs.

    :param app: a Celery app; its ``beatx_*`` settings choose the database.
    :param url: a database URL, instead of ``app``.
    :param engine: an existing SQLAlchemy engine, instead of either.
    :param auto_migrate: upgrade an empty or old schema on first use (default: the app's
        ``beatx_auto_migrate``, else ``True``); when off, an old schema raises
        :class:`~celery_beatx.errors.SchemaOutOfDate`.
    :param clock: returns the current aware time; injected by tests.
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
        self.engine = engine
        self.repo = Repository(engine)
        self.timezone = config.timezone if config else "UTC"
        self.auto_migrate = (config.auto_migrate if config else True) \
            if auto_migrate is None else auto_migrate
        self.clock = clock
        self.instance_id = instance_id or (config.instance_id if config else None)
        self._schema_checked = False

    # -- plumbing ------------------------------------------------------------------------

    def _tx(self, readonly: bool = False):  # type: ignore[no-untyped-def]
        if not self._schema_checked:
            ensure_schema(self.engine, self.auto_migrate)
            self._schema_checked = True
        return self.repo.transaction(readonly=readonly)

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
                 enabled: bool) -> dict[str, Any]:
        spec = dict(DEFAULTS)
        spec.update(fields)
        spec.update(name=name, task=task, schedule=schedule, enabled=enabled)
        return validate_fields(spec, self.timezone)

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
                now: datetime, revision: int) -> list[Task]:
        """Insert validated specs (with version 1 of each) in one flush."""
        rows = []
        for spec, source in specs:
            schedule = schedule_from_dict(spec["schedule"])
            rows.append(Task(
                **{k: spec[k] for k in DEFINITION_FIELDS},
                name=spec["name"], enabled=spec["enabled"], source=source, version=1,
                last_run_at=None, total_run_count=0,
                next_run_at=first_run_at(effective_schedule(schedule, spec["calendar"]), now),
                revision=revision, created_at=now, updated_at=now,
            ))
        self.repo.add_tasks(session, rows)
        for row in rows:
            self.repo.add_version(session, row.name, 1, definition_of(row), now,
                                  self.instance_id, "created")
        session.flush()
        return rows

    # -- create, change, remove ----------------------------------------------------------

    def add(self, name: str, task: str, schedule: Any, *, enabled: bool = True,
            source: str = "api", **fields: Any) -> TaskInfo:
        """Add a task.  Keyword fields are those of the README's ``add`` signature.

        :raises TaskExists: a task with that name exists.
        :raises InvalidSchedule: a field is invalid (nothing is written).
        """
        return self.add_many([dict(fields, name=name, task=task, schedule=schedule,
                                   enabled=enabled, source=source)])[0]

    def add_many(self, specs: Iterable[Mapping[str, Any]]) -> list[TaskInfo]:
        """Add several tasks in one transaction: all are added or none is."""
        prepared: list[tuple[dict[str, Any], str]] = []
        seen: set[str] = set()
        for raw in specs:
            raw = dict(raw)
            for key in ("name", "task", "schedule"):
                if key not in raw:
                    raise InvalidSchedule(f"{key} is required", key)
            source = raw.pop("source", "api")
            spec = self._prepare(raw.pop("name"), raw.pop("task"), raw.pop("schedule"),
                                 raw, raw.pop("enabled", True))
            if spec["name"] in seen:
                raise TaskExists(f"task {spec['name']!r} is given twice")
            seen.add(spec["name"])
            prepared.append((spec, source))
        now = self._now()
        try:
            return self._add_prepared(prepared, seen, now)
        except IntegrityError:
            # Another process added one of these names between our check and our insert.
            with self._tx(readonly=True) as session:
                taken = self.repo.existing_names(session, seen)
            if taken:
                raise TaskExists(f"task {sorted(taken)[0]!r} exists already") from None
            raise

    def _add_prepared(self, prepared: list[tuple[dict[str, Any], str]], seen: set[str],
                      now: datetime) -> list[TaskInfo]:
        with self._tx() as session:
            taken = self.repo.existing_names(session, seen)
            if taken:
                raise TaskExists(f"task {sorted(taken)[0]!r} exists already")
            edges = {s["name"]: s["depends_on"] for s, _ in prepared if s["depends_on"]}
            if edges:
                known = seen | self.repo.existing_names(
                    session, {d for deps in edges.values() for d in deps})
                self._check_dependencies(session, edges, known)
            revision = self.repo.next_revision(session)
            rows = self._insert(session, prepared, now, revision)
            return [info_from_row(r) for r in rows]

    def update(self, name: str, **fields: Any) -> TaskInfo:
        """Change fields of a task; any definition change makes a new version.

        :raises TaskNotFound: no such task.
        :raises InvalidSchedule: a field is invalid (nothing is written).
        """
        if "name" in fields:
            raise InvalidSchedule("name cannot be changed; add a new task instead", "name")
        changes = validate_fields(fields, self.timezone)
        now = self._now()
        with self._tx() as session:
            row = self._row(session, name, for_update=True)
            if "depends_on" in changes:
                self._check_dependencies(session, {name: changes["depends_on"]},
                                         self.repo.existing_names(session, changes["depends_on"]))
            self._apply(session, row, changes, now, comment="updated")
            return info_from_row(row)

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
        if not changed_definition and row.enabled == was_enabled:
            return False
        if changed_definition:
            row.version += 1
            self.repo.add_version(session, row.name, row.version, after, now,
                                  self.instance_id, comment)
            if "depends_on" in changes:
                self.repo.set_dependencies(session, row.name, row.depends_on)
        timing = ("schedule", "calendar")
        if any(before[k] != after[k] for k in timing) or (row.enabled and not was_enabled):
            schedule, problem = load_schedule(row.schedule)
            row.invalid_reason = problem
            row.next_run_at = first_run_at(effective_schedule(schedule, row.calendar), now,
                                           row.last_run_at) if schedule else None
        row.revision = revision if revision is not None else self.repo.next_revision(session)
        row.updated_at = now
        return True

    def _set_source(self, name: str, source: str, *, enabled: bool) -> None:
        """Beat's own bookkeeping of ``beat_schedule`` tasks (not a definition change)."""
        now = self._now()
        with self._tx() as session:
            row = self._row(session, name, for_update=True)
            row.source = source
            if not self._apply(session, row, {"enabled": enabled}, now, "config sync"):
                row.revision = self.repo.next_revision(session)

    def remove(self, name: str) -> None:
        """Remove a task (its versions go with it; its run history stays).

        :raises TaskNotFound: no such task.
        """
        self.remove_many([name])

    def remove_many(self, names: Iterable[str]) -> int:
        """Remove several tasks in one transaction: all exist and are removed, or none."""
        names = list(dict.fromkeys(names))
        now = self._now()
        with self._tx() as session:
            rows = {r.name: r for r in self.repo.get_tasks(session, names)}
            missing = [n for n in names if n not in rows]
            if missing:
                raise TaskNotFound(f"task {missing[0]!r} does not exist")
            dependants = [(a, b) for a, b in self.repo.dependency_edges(session)
                          if b in rows and a not in rows]
            if dependants:
                a, b = dependants[0]
                raise InvalidSchedule(
                    f"depends_on: task {a!r} depends on {b!r}; remove or change it first",
                    "depends_on")
            for row in rows.values():
                session.expunge(row)
            self.repo.remove_tasks(session, names, self.repo.next_revision(session), now)
            return len(names)

    # -- enable / disable ------------------------------------------------------------------

    def enable(self, name: str) -> TaskInfo:
        """Enable a task; its next run is computed from now."""
        return self.update(name, enabled=True)

    def disable(self, name: str) -> TaskInfo:
        """Disable a task; beat stops sending it within ``beatx_sync_interval``."""
        return self.update(name, enabled=False)

    def _set_enabled(self, enabled: bool, *, group: str | None = None,
                     tag: str | None = None) -> int:
        now = self._now()
        with self._tx() as session:
            rows = [r for r in self.repo.list_tasks(session, group=group, tag=tag)
                    if r.enabled != enabled]
            if not rows:
                return 0
            revision = self.repo.next_revision(session)
            for row in rows:
                self._apply(session, row, {"enabled": enabled}, now, "enabled", revision)
            return len(rows)

    def enable_group(self, group: str) -> int:
        """Enable every task of ``group``; returns how many changed."""
        return self._set_enabled(True, group=group)

    def disable_group(self, group: str) -> int:
        """Disable every task of ``group``; returns how many changed."""
        return self._set_enabled(False, group=group)

    def enable_tag(self, tag: str) -> int:
        """Enable every task tagged ``tag``; returns how many changed."""
        return self._set_enabled(True, tag=tag)

    def disable_tag(self, tag: str) -> int:
        """Disable every task tagged ``tag``; returns how many changed."""
        return self._set_enabled(False, tag=tag)

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str) -> TaskInfo:
        """One task. :raises TaskNotFound: no such task."""
        with self._tx(readonly=True) as session:
            return info_from_row(self._row(session, name))

    def list(self, group: str | None = None, tag: str | None = None,
             enabled: bool | None = None, source: str | None = None) -> list[TaskInfo]:
        """Tasks, by name, optionally filtered by group, tag, enabled state and source."""
        with self._tx(readonly=True) as session:
            rows = self.repo.list_tasks(session, group=group, tag=tag, enabled=enabled,
                                        source=source)
            return [info_from_row(r) for r in rows]

    def next_runs(self, name: str, n: int = 5, now: datetime | None = None) -> list[datetime]:
        """The next ``n`` fire times of a task, from its stored next run on."""
        if n < 0:
            raise InvalidSchedule(f"n {n!r} must be >= 0", "n")
        info = self.get(name)
        schedule = info.effective_schedule
        if schedule is None:
            raise InvalidSchedule(f"task {name!r} has an invalid schedule: "
                                  f"{info.invalid_reason}", "schedule")
        start = require_aware(now, "now") if now is not None else self._now()
        out: list[datetime] = []
        nxt = info.next_run_at if info.next_run_at and info.next_run_at > start else None
        last = info.last_run_at
        if nxt is None:
            nxt = schedule.next_after(start, last)
        while nxt is not None and len(out) < n:
            out.append(nxt)
            nxt = schedule.next_after(nxt, nxt)
        return out

    def versions(self, name: str) -> list[Version]:
        """Every version of a task, oldest first."""
        with self._tx(readonly=True) as session:
            self._row(session, name)
            return [Version(v.version, dict(v.definition), v.created_at, v.created_by,
                            v.comment) for v in self.repo.versions(session, name)]

    def rollback(self, name: str, version: int) -> TaskInfo:
        """Make version ``version`` current again, as a new version (history stays linear).

        :raises VersionNotFound: the task has no such version.
        """
        now = self._now()
        with self._tx() as session:
            row = self._row(session, name, for_update=True)
            old = self.repo.get_version(session, name, version)
            if old is None:
                raise VersionNotFound(f"task {name!r} has no version {version!r}")
            changes = validate_fields(
                {k: v for k, v in old.definition.items() if k in DEFINITION_FIELDS},
                self.timezone)
            if "depends_on" in changes:
                self._check_dependencies(session, {name: changes["depends_on"]},
                                         self.repo.existing_names(session, changes["depends_on"]))
            self._apply(session, row, changes, now, comment=f"rollback to {version}")
            return info_from_row(row)

    def history(self, name: str, limit: int = 50) -> list[RunInfo]:
        """The newest ``limit`` runs of a task, newest first."""
        with self._tx(readonly=True) as session:
            return [RunInfo(r.task_name, r.task_id, r.scheduled_at, r.attempt, r.status,
                            r.sent_at, r.started_at, r.finished_at, r.runtime, r.error)
                    for r in self.repo.runs_for(session, name, limit)]

    def alerts(self, level: str | None = None, since: datetime | None = None,
               limit: int = 1000) -> list[Alert]:
        """Stored alerts, newest first; ``level`` is the minimum level to include."""
        levels = None
        if level is not None:
            if level not in LEVELS:
                raise InvalidSchedule(f"level {level!r} is not one of {LEVELS}", "level")
            levels = LEVELS[LEVELS.index(level):]
        since = require_aware(since, "since") if since is not None else None
        with self._tx(readonly=True) as session:
            return [Alert(a.level, a.kind, a.task_name, a.message, a.at, dict(a.data or {}))
                    for a in self.repo.alerts(session, levels=levels, since=since,
                                              limit=limit)]

    # -- export / import -------------------------------------------------------------------

    def export_state(self) -> str:
        """All tasks, definition and state, as a JSON document (``celery-beatx/1``)."""
        with self._tx(readonly=True) as session:
            rows = self.repo.list_tasks(session)
            tasks = [dict(definition_of(r), name=r.name, enabled=r.enabled, source=r.source,
                          version=r.version, last_run_at=_iso(r.last_run_at),
                          total_run_count=r.total_run_count, next_run_at=_iso(r.next_run_at))
                     for r in rows]
        return json.dumps({"format": EXPORT_FORMAT, "exported_at": _iso(self._now()),
                           "tasks": tasks}, indent=2, sort_keys=True)

    def import_state(self, document: str | Mapping[str, Any], mode: str = "merge") -> int:
        """Load an :meth:`export_state` document; returns how many tasks were written.

        ``merge`` adds new tasks and updates existing ones; ``replace`` also removes tasks
        the document does not name.  Everything is validated first: on any error nothing
        is written.
        """
        if mode not in ("merge", "replace"):
            raise InvalidSchedule(f"mode {mode!r} is not 'merge' or 'replace'", "mode")
        doc = _parse_document(document)
        prepared: list[tuple[dict[str, Any], dict[str, Any]]] = []
        seen: set[str] = set()
        for i, item in enumerate(doc["tasks"]):
            if not isinstance(item, Mapping):
                raise InvalidSchedule(f"tasks[{i}] is not an object", "tasks")
            where = f"tasks[{i}] ({item.get('name')!r})"
            try:
                fields = {k: item[k] for k in DEFINITION_FIELDS if k in item}
                spec = self._prepare(item.get("name"), item.get("task"), item.get("schedule"),
                                     fields, item.get("enabled", True))
                state = _import_state_fields(item)
            except InvalidSchedule as exc:
                raise InvalidSchedule(f"{where}: {exc}", exc.field) from None
            if spec["name"] in seen:
                raise TaskExists(f"{where}: task is given twice")
            seen.add(spec["name"])
            state["source"] = item.get("source", "import")
            prepared.append((spec, state))
        now = self._now()
        with self._tx() as session:
            existing = {r.name: r for r in self.repo.all_tasks(session)}
            edges = {s["name"]: s["depends_on"] for s, _ in prepared}
            known = seen | (set() if mode == "replace" else set(existing))
            if mode == "replace":
                stale = [existing[n] for n in existing if n not in seen]
            else:
                stale = []
            for row in stale:  # drop them first so the dependency graph is the new one
                self.repo.set_dependencies(session, row.name, [])
            self._check_dependencies(session, {k: v for k, v in edges.items() if v}, known)
            revision = self.repo.next_revision(session)
            for row in stale:
                session.expunge(row)
            if stale:
                self.repo.remove_tasks(session, [r.name for r in stale], revision, now)
            new = [(spec, state.pop("source")) for spec, state in prepared
                   if spec["name"] not in existing]
            inserted = {r.name: r for r in self._insert(session, new, now, revision)}
            for spec, state in prepared:
                row = inserted.get(spec["name"])
                if row is None:
                    row = existing[spec["name"]]
                    state.pop("source")
                    self._apply(session, row, {k: spec[k] for k in (*DEFINITION_FIELDS,
                                                                    "enabled")},
                                now, "imported", revision)
                    row.revision = revision
                for key, value in state.items():
                    setattr(row, key, value)
            session.flush()
            return len(prepared)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_document(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, (str, bytes)):
        try:
            doc = json.loads(document)
        except ValueError as exc:
            raise InvalidSchedule(f"document is not valid JSON: {exc}", "document") from None
    else:
        doc = document
    if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
        fmt = doc.get("format") if isinstance(doc, Mapping) else None
        raise InvalidSchedule(f"format {fmt!r} is not {EXPORT_FORMAT!r}", "format")
    if not isinstance(doc.get("tasks"), list):
        raise InvalidSchedule("tasks must be a list", "tasks")
    return doc


def _import_state_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key in ("last_run_at", "next_run_at"):
        value = item.get(key)
        if value is None:
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise InvalidSchedule(f"{key} {value!r} is not an ISO datetime", key) from None
        if parsed.tzinfo is None:
            raise InvalidSchedule(f"{key} {value!r} is a naive datetime", key)
        state[key] = parsed.astimezone(UTC)
    count = item.get("total_run_count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidSchedule(f"total_run_count {count!r} must be an integer >= 0",
                              "total_run_count")
    state["total_run_count"] = count
    return state


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
