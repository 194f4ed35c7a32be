"""Every query celery-beatx runs.  Nothing outside :mod:`celery_beatx.store` builds SQL.

Each public method takes the :class:`~sqlalchemy.orm.Session` of the caller's transaction,
so a caller composes several of them into one atomic change with :meth:`Repository.transaction`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from .models import Counter, Dependency, Run, Task, TaskVersion, Tombstone

UTC = timezone.utc
REVISION = "revision"

#: State columns beat writes after a send; everything else on a task is definition.
STATE_FIELDS = ("last_run_at", "total_run_count", "next_run_at")


class Repository:
    """Data access for tasks, their versions, the change feed and runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    # -- change feed ---------------------------------------------------------------------

    def next_revision(self, session: Session) -> int:
        """Take the next change revision.

        The counter row stays locked until the caller commits, so revisions become visible
        in increasing order and a reader that saw revision N never misses a later commit
        with a smaller number.
        """
        result = session.execute(
            update(Counter).where(Counter.name == REVISION).values(value=Counter.value + 1)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            session.add(Counter(name=REVISION, value=1))
            session.flush()
            return 1
        return int(session.execute(
            select(Counter.value).where(Counter.name == REVISION)
        ).scalar_one())

    def current_revision(self, session: Session) -> int:
        """The newest revision handed out so far (0 when none)."""
        value = session.execute(
            select(Counter.value).where(Counter.name == REVISION)
        ).scalar_one_or_none()
        return int(value or 0)

    def changes_since(
        self, session: Session, revision: int
    ) -> tuple[list[Task], list[Tombstone]]:
        """Tasks changed and tasks removed after ``revision`` (indexed lookups only)."""
        tasks = list(session.scalars(
            select(Task).where(Task.revision > revision).order_by(Task.revision)
        ))
        gone = list(session.scalars(
            select(Tombstone).where(Tombstone.revision > revision).order_by(Tombstone.revision)
        ))
        return tasks, gone

    # -- tasks ---------------------------------------------------------------------------

    def get_task(self, session: Session, name: str, *, for_update: bool = False) -> Task | None:
        stmt = select(Task).where(Task.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        return session.scalars(stmt).one_or_none()

    def get_tasks(self, session: Session, names: Iterable[str]) -> list[Task]:
        names = list(names)
        found: list[Task] = []
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            found.extend(session.scalars(select(Task).where(Task.name.in_(chunk))))
        return found

    def existing_names(self, session: Session, names: Iterable[str]) -> set[str]:
        names = list(names)
        found: set[str] = set()
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            found.update(session.scalars(select(Task.name).where(Task.name.in_(chunk))))
        return found

    def list_tasks(
        self,
        session: Session,
        *,
        group: str | None = None,
        tag: str | None = None,
        enabled: bool | None = None,
        source: str | None = None,
    ) -> list[Task]:
        stmt = select(Task).order_by(Task.name)
        if group is not None:
            stmt = stmt.where(Task.group == group)
        if enabled is not None:
            stmt = stmt.where(Task.enabled.is_(enabled))
        if source is not None:
            stmt = stmt.where(Task.source == source)
        tasks = list(session.scalars(stmt))
        if tag is not None:
            # Tags are a JSON list; filtering in Python keeps this portable across dialects.
            tasks = [t for t in tasks if tag in (t.tags or [])]
        return tasks

    def all_tasks(self, session: Session) -> list[Task]:
        return list(session.scalars(select(Task)))

    def add_task(self, session: Session, task: Task) -> None:
        session.add(task)
        session.flush()
        self.set_dependencies(session, task.name, task.depends_on or [])

    def set_dependencies(self, session: Session, name: str, depends_on: Sequence[str]) -> None:
        session.execute(delete(Dependency).where(Dependency.task_name == name))
        for other in dict.fromkeys(depends_on):
            session.add(Dependency(task_name=name, depends_on=other))
        session.flush()

    def dependency_edges(self, session: Session) -> list[tuple[str, str]]:
        rows = session.execute(select(Dependency.task_name, Dependency.depends_on))
        return [(a, b) for a, b in rows]

    def remove_task(self, session: Session, task: Task, revision: int, now: datetime) -> None:
        """Delete ``task`` and leave a tombstone so running beats drop it."""
        session.execute(delete(Dependency).where(Dependency.task_name == task.name))
        session.delete(task)
        session.flush()
        stone = session.get(Tombstone, task.name)
        if stone is None:
            session.add(Tombstone(name=task.name, revision=revision, removed_at=now))
        else:
            stone.revision, stone.removed_at = revision, now
        session.flush()

    def clear_tombstone(self, session: Session, name: str) -> None:
        session.execute(delete(Tombstone).where(Tombstone.name == name))

    def save_state(
        self, session: Session, name: str, *, last_run_at: datetime | None,
        total_run_count: int, next_run_at: datetime | None, enabled: bool | None = None,
    ) -> None:
        """Write the scheduling state of one task (no revision bump: it is not a definition
        change, and beats do not need to re-read their own progress)."""
        values: dict[str, Any] = {
            "last_run_at": last_run_at,
            "total_run_count": total_run_count,
            "next_run_at": next_run_at,
        }
        if enabled is not None:
            values["enabled"] = enabled
        session.execute(update(Task).where(Task.name == name).values(**values))

    def mark_invalid(self, session: Session, name: str, reason: str | None) -> None:
        session.execute(update(Task).where(Task.name == name).values(invalid_reason=reason))

    def set_enabled_where(
        self, session: Session, *, revision: int, enabled: bool, names: Iterable[str],
        now: datetime,
    ) -> int:
        names = list(names)
        count = 0
        for start in range(0, len(names), 500):
            chunk = names[start:start + 500]
            result = session.execute(
                update(Task).where(Task.name.in_(chunk))
                .values(enabled=enabled, revision=revision, updated_at=now)
            )
            count += result.rowcount  # type: ignore[attr-defined]
        return count

    # -- versions ------------------------------------------------------------------------

    def add_version(
        self, session: Session, name: str, version: int, definition: dict[str, Any],
        now: datetime, created_by: str | None = None, comment: str = "",
    ) -> None:
        session.add(TaskVersion(
            task_name=name, version=version, definition=definition, created_at=now,
            created_by=created_by, comment=comment,
        ))

    def versions(self, session: Session, name: str) -> list[TaskVersion]:
        return list(session.scalars(
            select(TaskVersion).where(TaskVersion.task_name == name).order_by(TaskVersion.version)
        ))

    def get_version(self, session: Session, name: str, version: int) -> TaskVersion | None:
        return session.scalars(select(TaskVersion).where(
            TaskVersion.task_name == name, TaskVersion.version == version
        )).one_or_none()

    def delete_versions(self, session: Session, name: str) -> None:
        session.execute(delete(TaskVersion).where(TaskVersion.task_name == name))

    # -- runs ----------------------------------------------------------------------------

    def add_runs(self, session: Session, runs: Iterable[Run]) -> None:
        session.add_all(list(runs))
        session.flush()

    def mark_runs(
        self, session: Session, task_ids: Sequence[str], *, status: str, at: datetime,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if status == "sent":
            values["sent_at"] = at
        if error is not None:
            values["error"] = error
        for start in range(0, len(task_ids), 500):
            chunk = list(task_ids[start:start + 500])
            session.execute(update(Run).where(Run.task_id.in_(chunk)).values(**values))

    def runs_with_status(self, session: Session, statuses: Sequence[str]) -> list[Run]:
        return list(session.scalars(
            select(Run).where(Run.status.in_(list(statuses))).order_by(Run.id)
        ))

    def runs_for(self, session: Session, name: str, limit: int = 50) -> list[Run]:
        return list(session.scalars(
            select(Run).where(Run.task_name == name)
            .order_by(Run.scheduled_at.desc(), Run.id.desc()).limit(limit)
        ))

    def run_exists(self, session: Session, task_id: str) -> bool:
        return session.scalar(select(func.count()).where(Run.task_id == task_id)) > 0

    def prune_runs(self, session: Session, name: str, keep: int) -> None:
        """Delete all but the newest ``keep`` runs of ``name``."""
        cutoff = session.scalars(
            select(Run.id).where(Run.task_name == name).order_by(Run.id.desc())
            .offset(keep).limit(1)
        ).first()
        if cutoff is not None:
            session.execute(delete(Run).where(Run.task_name == name, Run.id <= cutoff))

    def delete_runs(self, session: Session, name: str) -> None:
        session.execute(delete(Run).where(Run.task_name == name))

    def due_names(self, session: Session, now: datetime, limit: int = 1000) -> list[str]:
        """Enabled tasks whose next run is at or before ``now`` (uses the index)."""
        return list(session.scalars(
            select(Task.name).where(Task.enabled.is_(True), Task.next_run_at <= now)
            .order_by(Task.next_run_at).limit(limit)
        ))

    def any_invalid(self, session: Session) -> list[Task]:
        return list(session.scalars(select(Task).where(or_(Task.invalid_reason.is_not(None)))))
