"""The ORM schema.  Every table is prefixed ``beatx_``.

Designed for the whole product: definitions and state of tasks, their versions, the change
feed (revision counter and tombstones), locks, runs, alerts and beat instances.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..values import decode_expires, expires_tag
from .types import DateTimeUTC, EmptyAsNull, EmptyTextAsNull, ScheduleJSON

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NAME_LENGTH = 200
#: A double-precision float everywhere (``FLOAT`` is single precision on MySQL/MariaDB).
EXACT_FLOAT = Float().with_variant(Double(), "mysql", "mariadb")


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTimeUTC(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Counter(Base):
    """Named monotonically increasing counters; ``revision`` orders the change feed."""

    __tablename__ = "beatx_counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Task(Base):
    """A scheduled task: its definition and its scheduling state."""

    __tablename__ = "beatx_tasks"
    __table_args__ = (
        # Only grouped tasks are in the group index (where the database can: not MySQL or
        # MariaDB); lookups are by a group name, never for "no group".
        Index("ix_beatx_tasks_group_name", "group_name",
              postgresql_where=text("group_name IS NOT NULL"),
              sqlite_where=text("group_name IS NOT NULL")),
    )

    #: The key everything refers to a task by (there is no surrogate id: 0008).
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    task: Mapped[str] = mapped_column(String(NAME_LENGTH))
    #: Stored without a crontab's ``"*"`` fields (see ScheduleJSON).
    schedule: Mapped[dict[str, Any]] = mapped_column(ScheduleJSON())
    # Empty values are stored as NULL (see EmptyAsNull): most tasks leave these empty.
    args: Mapped[list[Any]] = mapped_column(EmptyAsNull(list), nullable=True)
    kwargs: Mapped[dict[str, Any]] = mapped_column(EmptyAsNull(dict), nullable=True)
    queue: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    priority: Mapped[int | None]
    #: ``expires`` as seconds after each send; see :attr:`expires`.
    expires_seconds: Mapped[float | None] = mapped_column("expires", EXACT_FLOAT)
    #: ``expires`` as an absolute time; see :attr:`expires`.
    expires_at: Mapped[datetime | None]
    headers: Mapped[dict[str, Any]] = mapped_column(EmptyAsNull(dict), nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(EmptyAsNull(dict), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    group: Mapped[str | None] = mapped_column("group_name", String(NAME_LENGTH))
    tags: Mapped[list[Any]] = mapped_column(EmptyAsNull(list), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="api")
    description: Mapped[str] = mapped_column(EmptyTextAsNull, default="", nullable=True)
    depends_on: Mapped[list[Any]] = mapped_column(EmptyAsNull(list), nullable=True)
    retry: Mapped[dict[str, Any] | None] = mapped_column(EmptyAsNull())
    alerts: Mapped[dict[str, Any] | None] = mapped_column(EmptyAsNull())
    calendar: Mapped[dict[str, Any] | None] = mapped_column(EmptyAsNull())
    jitter: Mapped[float] = mapped_column(EXACT_FLOAT, default=0.0)
    catchup: Mapped[str] = mapped_column(String(8), default="once")
    catchup_limit: Mapped[int] = mapped_column(Integer, default=100)
    overlap: Mapped[str] = mapped_column(String(16), default="allow")
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: When, by whom and why the current version was made (its snapshot is the row itself;
    #: ``beatx_task_versions`` keeps the versions it superseded).
    version_at: Mapped[datetime | None]
    version_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    version_comment: Mapped[str | None] = mapped_column(Text)
    # state
    last_run_at: Mapped[datetime | None]
    total_run_count: Mapped[int] = mapped_column(Integer, default=0)
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    invalid_reason: Mapped[str | None] = mapped_column(Text)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    paused_at: Mapped[datetime | None]
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def expires(self) -> Any:
        """The ``expires`` field in its stored (JSON) form; see :func:`stored_expires`."""
        return stored_expires(self)

    @expires.setter
    def expires(self, value: Any) -> None:
        if isinstance(value, dict):
            self.expires_seconds, self.expires_at = None, decode_expires(value)
        else:
            self.expires_seconds, self.expires_at = value, None


class Tombstone(Base):
    """A removed task, so that the change feed tells running beats about removals."""

    __tablename__ = "beatx_tombstones"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, index=True)
    removed_at: Mapped[datetime]


#: The column attributes of :class:`Task`, in the order ``Repository.task_rows`` selects
#: them (the keys of its plain rows).
TASK_COLUMNS: tuple[str, ...] = tuple(attr.key for attr in Task.__mapper__.column_attrs)


def stored_expires(row: Any) -> Any:
    """A task's ``expires`` in its stored (JSON) form, kept in two columns: seconds
    (``expires``), or an absolute time (``expires_at``) as kombu's form of a datetime.
    ``row``: a :class:`Task`, or a plain row of its columns (``Repository.task_rows``)."""
    if row.expires_at is not None:
        return expires_tag(row.expires_at)
    return row.expires_seconds


#: The comment of version 1, made with the task (its row stores NULL instead).
CREATED_COMMENT = "created"


def version_stamp(row: Any) -> tuple[datetime, str | None, str]:
    """When, by whom and why the current version of a task row was made.

    Version 1 is made with the task: its row stores neither that time (``created_at``) nor
    that comment (:data:`CREATED_COMMENT`), 33 bytes a row on SQLite.
    ``row``: a :class:`Task`, or a plain row of its columns."""
    comment = row.version_comment
    if comment is None:
        comment = CREATED_COMMENT if row.version == 1 else ""
    return row.version_at or row.created_at, row.version_by, comment


class TaskVersion(Base):
    """The snapshot of a superseded version of a task (the current version is the task row
    itself; see ``Task.version_at``)."""

    __tablename__ = "beatx_task_versions"
    __table_args__ = (UniqueConstraint("task_name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    comment: Mapped[str] = mapped_column(Text, default="")


class Dependency(Base):
    """Edge ``task_name`` depends on ``depends_on`` (kept in sync with ``Task.depends_on``)."""

    __tablename__ = "beatx_dependencies"

    task_name: Mapped[str] = mapped_column(
        String(NAME_LENGTH), ForeignKey("beatx_tasks.name", ondelete="CASCADE"), primary_key=True
    )
    depends_on: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True, index=True)


class Lock(Base):
    """Named leases (leader election, admin locks), timed by the database clock.

    A released or expired lease keeps its row, so ``token`` (the fencing token) only ever
    grows: each new holder gets the previous token + 1.
    """

    __tablename__ = "beatx_locks"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    owner: Mapped[str] = mapped_column(String(NAME_LENGTH))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Where the holder runs (boot id and PID namespace) and its PID, so that a holder that
    #: died on this same machine is recognised without waiting for its lease to expire.
    host: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    pid: Mapped[int | None]


class Run(Base):
    """One send of a task (and, with tracking, its outcome)."""

    __tablename__ = "beatx_runs"
    __table_args__ = (
        UniqueConstraint("task_id"),
        Index("ix_beatx_runs_task_name_scheduled_at", "task_name", "scheduled_at"),
        Index("ix_beatx_runs_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    task_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    task_id: Mapped[str] = mapped_column(String(64))
    scheduled_at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    instance_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    #: Indexed: the alert rules read runs recorded since their last look.
    created_at: Mapped[datetime] = mapped_column(index=True)
    sent_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    #: Indexed: the alert rules read outcomes recorded since their last look.
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
    runtime: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    #: Why the run exists: ``scheduled``, ``catchup``, ``retry``, ``manual`` or ``backfill``.
    kind: Mapped[str] = mapped_column(String(16), default="scheduled")
    #: Fencing token of the leader that recorded the run (``None`` without HA).
    token: Mapped[int | None] = mapped_column(BigInteger)
    #: When the next attempt is due (a retry waiting for its delay).
    retry_at: Mapped[datetime | None]
    #: Deliveries of this task id the worker saw after the first (duplicates, not run).
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    #: For a failed run: whether a retry was scheduled, the retries are used up, or there is
    #: no retry policy (``None``: not decided yet).
    retry_state: Mapped[str | None] = mapped_column(String(16))


class Alert(Base):
    """A stored alert."""

    __tablename__ = "beatx_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    level: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    task_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH), index=True)
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(index=True)
    data: Mapped[dict[str, Any] | None]
    #: When a later ``resolved`` alert closed this one (condition kinds only).
    resolved_at: Mapped[datetime | None]


class Instance(Base):
    """A beat process: its heartbeat (database time) is written every sync interval."""

    __tablename__ = "beatx_instances"

    instance_id: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    is_leader: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``leader``, ``standby`` or ``single`` (``beatx_ha`` off).
    role: Mapped[str] = mapped_column(String(16), default="standby")
    host: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    pid: Mapped[int | None]
    #: Set by a clean shutdown: the runs it left pending were interrupted, not crashed.
    stopped_at: Mapped[datetime | None]
    #: How often this beat writes its heartbeat (its ``beatx_sync_interval``), so that
    #: ``health()`` judges each instance by its own pace.
    heartbeat_every: Mapped[float | None] = mapped_column(EXACT_FLOAT)
