"""Creating, changing, enabling, reading and versioning tasks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..definitions import (
    DEFINITION_FIELDS,
    TaskInfo,
    check_source,
    effective_schedule,
    validate_fields,
)
from ..errors import InvalidSchedule, TaskExists, TaskNotFound, VersionNotFound
from ..gcpause import gc_paused
from ..schedules.base import require_aware
from ..schedules.memory import is_in_memory
from ..store.models import version_stamp
from ..store.rows import definition_of, info_from_row, info_from_written, load_schedule
from ._base import AdminBase, first_run_at
from .dependencies import drop_dependencies_on

#: Options a ``kombu.Queue`` given as ``queue`` sets (see ``values.queue_routing``).
ROUTING = ("exchange", "exchange_type", "routing_key")


@dataclass(frozen=True)
class Version:
    """One stored version of a task's definition."""

    version: int
    definition: dict[str, Any]
    created_at: datetime
    created_by: str | None
    comment: str


class TasksMixin(AdminBase):
    """The task operations of :class:`~celery_beatx.BeatAdmin`."""

    # -- create, change, remove ----------------------------------------------------------

    def add(self, name: str, task: str, schedule: Any, *, enabled: bool = True,
            source: str = "api", **fields: Any) -> TaskInfo:
        """Add a task.  Keyword fields are those of the README's ``add`` signature.

        :raises TaskExists: a task with that name exists.
        :raises InvalidSchedule: a field is invalid (nothing is written).
        """
        return self.add_many([dict(fields, name=name, task=task, schedule=schedule,
                                   enabled=enabled, source=source)])[0]

    @gc_paused()  # the specs, rows and TaskInfos built here all stay alive
    def add_many(self, specs: Iterable[Mapping[str, Any]]) -> list[TaskInfo]:
        """Add several tasks in one transaction: all are added or none is."""
        prepared: list[tuple[dict[str, Any], str]] = []
        seen: set[str] = set()
        now = self._now()
        for raw in specs:
            raw = dict(raw)
            for key in ("name", "task", "schedule"):
                if key not in raw:
                    raise InvalidSchedule(f"{key} is required", key)
            source = check_source(raw.pop("source", "api"))
            spec = self._prepare(raw.pop("name"), raw.pop("task"), raw.pop("schedule"),
                                 raw, raw.pop("enabled", True), now)
            if spec["name"] in seen:
                raise TaskExists(f"task {spec['name']!r} is given twice")
            seen.add(spec["name"])
            prepared.append((spec, source))
        try:
            return self._write(lambda session: self._add_prepared(session, prepared, seen, now))
        except IntegrityError:
            # Another process added one of these names between our check and our insert.
            with self._tx(readonly=True) as session:
                taken = self.repo.existing_names(session, seen)
            if taken:
                raise TaskExists(f"task {sorted(taken)[0]!r} exists already") from None
            raise

    def _add_prepared(self, session: Session, prepared: list[tuple[dict[str, Any], str]],
                      seen: set[str], now: datetime) -> list[TaskInfo]:
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
        return [info_from_written(r, r.loaded) for r in rows]

    def update(self, name: str, **fields: Any) -> TaskInfo:
        """Change fields of a task; any definition change makes a new version.

        A ``kombu.Queue`` given as ``queue`` without ``options`` sets the routing options
        it carries (exchange, exchange type, routing key) and keeps the other options.

        :raises TaskNotFound: no such task.
        :raises InvalidSchedule: a field is invalid (nothing is written).
        """
        if "name" in fields:
            raise InvalidSchedule("name cannot be changed; add a new task instead", "name")
        now = self._now()
        changes = validate_fields(fields, self.timezone, now)
        self._check_outcomes_needed(changes)

        def body(session: Session) -> TaskInfo:
            row = self._row(session, name, for_update=True)
            final = changes
            if "options" in changes and "options" not in fields:
                # Routing from a Queue: merged into the options the task has.
                kept = {k: v for k, v in (row.options or {}).items() if k not in ROUTING}
                final = dict(changes, options=dict(kept, **changes["options"]))
            if "depends_on" in final:
                self._check_dependencies(session, {name: final["depends_on"]},
                                         self.repo.existing_names(session, final["depends_on"]))
            self._apply(session, row, final, now, comment="updated")
            return info_from_row(row)

        return self._write(body)

    def _set_source(self, name: str, source: str, *, enabled: bool) -> None:
        """Beat's own bookkeeping of ``beat_schedule`` tasks (not a definition change)."""
        check_source(source)
        now = self._now()

        def body(session: Session) -> None:
            row = self._row(session, name, for_update=True)
            row.source = source
            if not self._apply(session, row, {"enabled": enabled}, now, "config sync"):
                row.revision = self.repo.next_revision(session)

        self._write(body)

    def _seed_state(self, name: str, last_run_at: datetime | None = None,
                    total_run_count: int | None = None) -> None:
        """Beat's runtime API: the state Celery's ``add(last_run_at=...)`` gives a new task
        (a naive time is UTC, as Celery reads it); the next run follows from it."""
        if last_run_at is not None and not isinstance(last_run_at, datetime):
            raise InvalidSchedule(f"last_run_at {last_run_at!r} is not a datetime",
                                  "last_run_at")
        if total_run_count is not None and (isinstance(total_run_count, bool) or
                                            not isinstance(total_run_count, int) or
                                            total_run_count < 0):
            raise InvalidSchedule(f"total_run_count {total_run_count!r} must be an integer "
                                  ">= 0", "total_run_count")
        now = self._now()
        with self._tx() as session:
            row = self._row(session, name, for_update=True)
            if last_run_at is not None:
                if last_run_at.tzinfo is None or last_run_at.utcoffset() is None:
                    last_run_at = last_run_at.replace(tzinfo=timezone.utc)
                row.last_run_at = last_run_at.astimezone(timezone.utc)
                schedule, _ = load_schedule(row.schedule)
                if schedule is not None:
                    row.next_run_at = first_run_at(
                        effective_schedule(schedule, row.calendar), now, row.last_run_at,
                        changed=True)
            if total_run_count is not None:
                row.total_run_count = total_run_count
            row.revision = self.repo.next_revision(session)
            row.updated_at = now

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a task (its versions go with it; its run history stays).

        A task others depend on is refused unless ``force``: then it is taken out of their
        ``depends_on`` (a new version of each), in the same transaction.

        :raises TaskNotFound: no such task.
        """
        self.remove_many([name], force=force)

    def remove_many(self, names: Iterable[str], force: bool = False) -> int:
        """Remove several tasks in one transaction: all exist and are removed, or none
        (``force``: as in :meth:`remove`)."""
        if not isinstance(force, bool):
            raise InvalidSchedule(f"force {force!r} must be True or False", "force")
        names = list(dict.fromkeys(names))
        now = self._now()

        def body(session: Session) -> int:
            rows = {r.name: r for r in self.repo.get_tasks(session, names, for_update=True)}
            missing = [n for n in names if n not in rows]
            if missing:
                raise TaskNotFound(f"task {missing[0]!r} does not exist")
            dependants = sorted((a, b) for a, b in self.repo.dependency_edges(session)
                                if b in rows and a not in rows)
            if dependants and not force:
                a, b = dependants[0]
                raise InvalidSchedule(
                    f"depends_on: task {a!r} depends on {b!r}; remove or change it first, "
                    "or pass force=True", "depends_on")
            revision = self.repo.next_revision(session)
            if dependants:
                drop_dependencies_on(self, session, set(rows), now, revision)
            for row in rows.values():
                session.expunge(row)
            self.repo.remove_tasks(session, names, revision, now)
            return len(names)

        return self._write(body)

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

        def body(session: Session) -> int:
            # Rows locked in name order, after the change-feed counter (see _write), and
            # judged again once locked: a concurrent change may have moved them meanwhile.
            names = [r.name for r in self.repo.list_tasks(session, group=group, tag=tag)
                     if r.enabled != enabled]
            rows = [r for r in self.repo.get_tasks(session, names, for_update=True)
                    if r.enabled != enabled and (group is None or r.group == group)
                    and (tag is None or tag in (r.tags or []))]
            if not rows:
                return 0
            revision = self.repo.next_revision(session)
            for row in rows:
                self._apply(session, row, {"enabled": enabled}, now, "enabled", revision)
            return len(rows)

        return self._write(body)

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
        if is_in_memory(info.schedule_dict):
            # Best effort: only the Celery object in beat's memory knows; ask this
            # process's copy of it (from the app's beat_schedule).
            from ..celery_entries import memory_next_runs

            start = require_aware(now, "now") if now is not None else self._now()
            last = info.last_run_at
            if last is None:  # beat counts a task that never ran from its creation
                with self._tx(readonly=True) as session:
                    created = self._row(session, name).created_at
                last = created if isinstance(created, datetime) else None
            return memory_next_runs(self.app, name, last, n, start)
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
            row = self._row(session, name)
            stored = [Version(v.version, dict(v.definition), v.created_at, v.created_by,
                              v.comment) for v in self.repo.versions(session, name)
                      if v.version < row.version]
            return stored + [_current_version(row)]

    def rollback(self, name: str, version: int) -> TaskInfo:
        """Make version ``version`` current again, as a new version (history stays linear).

        :raises VersionNotFound: the task has no such version.
        """
        now = self._now()

        def body(session: Session) -> TaskInfo:
            row = self._row(session, name, for_update=True)
            if version == row.version:
                definition = _current_version(row).definition
            else:
                old = self.repo.get_version(session, name, version) \
                    if isinstance(version, int) and 0 < version < row.version else None
                if old is None:
                    raise VersionNotFound(f"task {name!r} has no version {version!r}")
                definition = old.definition
            changes = validate_fields(
                {k: v for k, v in definition.items() if k in DEFINITION_FIELDS},
                self.timezone, now)
            if "depends_on" in changes:
                self._check_dependencies(session, {name: changes["depends_on"]},
                                         self.repo.existing_names(session, changes["depends_on"]))
            self._apply(session, row, changes, now, comment=f"rollback to {version}")
            return info_from_row(row)

        return self._write(body)


def _current_version(row: Any) -> Version:
    """The version a task row is at (its snapshot is the row itself)."""
    return Version(row.version, definition_of(row), *version_stamp(row))
