"""Every query celery-beatx runs.  Nothing outside :mod:`celery_beatx.store` builds SQL.

Each public method takes the :class:`~sqlalchemy.orm.Session` of the caller's transaction,
so a caller composes several of them into one atomic change with :meth:`Repository.transaction`.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Float,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .models import (
    TASK_COLUMNS,
    Alert,
    Counter,
    Dependency,
    Instance,
    Lock,
    Run,
    Task,
    TaskVersion,
    Tombstone,
)
from .types import DateTimeUTC

UTC = timezone.utc
REVISION = "revision"

#: State columns beat writes after a send; everything else on a task is definition.
STATE_FIELDS = ("last_run_at", "total_run_count", "next_run_at")

#: Bulk statements never need the ORM to search the session for matching objects (that
#: search makes each statement cost as much as everything the session already holds).
NO_SYNC = {"synchronize_session": False}
CHUNK = 500
#: Every column of a task, under the model's attribute names (see ``Repository.task_rows``).
_TASK_ATTRIBUTES = [getattr(Task, key) for key in TASK_COLUMNS]
#: The most bytes of JSON one flush writes (about): the ORM sends many rows in one INSERT,
#: and MySQL/MariaDB refuse a statement larger than ``max_allowed_packet`` (16 MiB by
#: default) by dropping the connection.
FLUSH_BYTES = 4 * 1024 * 1024
#: Rows per fetch of beat's start-up load.  On PostgreSQL each fetch is a result buffer
#: that libpq mallocs in small blocks between objects that stay alive; at 10,000 rows the
#: freed buffers left about 75 bytes per loaded task of heap that glibc could not give
#: back (523 against 451 bytes per task at 100,000 tasks), and 2,000 rows cost no
#: measurable start-up time (benchmarks/bench_scheduler.py --figures core).
LOAD_ROWS = 2_000

T = TypeVar("T")


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


class _ArraySQL:
    """A PostgreSQL statement of array parameters (in order), run as the driver's SQL.
    psycopg 3 takes the arrays in binary (``%b``): as text, every element of an array is
    quoted and checked for characters to escape, which was a third of writing a batch."""

    __slots__ = ("binary", "plain")

    def __init__(self, sql: str) -> None:
        self.binary = sql.format(p="%b")
        self.plain = sql.format(p="%s")

    def __call__(self, session: Session, *params: Any) -> Any:
        connection = session.connection()
        sql = self.binary if connection.dialect.driver == "psycopg" else self.plain
        return connection.exec_driver_sql(sql, params)


#: PostgreSQL: lock the tasks of a batch in name order (concurrent writers then cannot
#: deadlock on them), before :data:`_SAVE_STATES_PG` joins them in whatever order its plan
#: takes.
_LOCK_TASKS_PG = _ArraySQL(
    "SELECT name FROM beatx_tasks WHERE name = ANY(CAST({p} AS text[])) "
    "ORDER BY name FOR UPDATE")
#: PostgreSQL: ``Repository.save_states`` in one statement (times are naive UTC, as stored).
_SAVE_STATES_PG = _ArraySQL(
    "UPDATE beatx_tasks AS t SET "
    "last_run_at = CASE WHEN s.added > 0 THEN s.last_run_at ELSE t.last_run_at END, "
    "total_run_count = t.total_run_count + s.added, "
    "next_run_at = CASE WHEN t.revision = s.revision THEN s.next_run_at "
    "ELSE t.next_run_at END "
    "FROM unnest(CAST({p} AS text[]), CAST({p} AS bigint[]), "
    "CAST({p} AS timestamp[]), CAST({p} AS integer[]), CAST({p} AS timestamp[])) "
    "AS s(name, revision, last_run_at, added, next_run_at) "
    "WHERE t.name = s.name")


#: PostgreSQL: the status of each run among the ``ids`` array, found by one probe of the
#: ``task_id`` index per id.
#:
#: Beat sends the same statement shapes all the time, so psycopg prepares them and
#: PostgreSQL soon keeps a generic plan.  For an ``IN`` list (or ``= ANY``), a generic plan
#: made while the runs table was small (a new database, before autovacuum analysed it) is a
#: sequential scan comparing every row with every id: after a burst had added tens of
#: thousands of runs, one read of 500 ids took 400-700 ms.  A lateral probe per id
#: (``LIMIT 1`` keeps it from being flattened into a join) costs the same whatever the plan
#: was made from.
_RUN_STATUSES_PG = _ArraySQL(
    "SELECT r.task_id, r.status FROM unnest(CAST({p} AS text[])) AS i(task_id) "
    "CROSS JOIN LATERAL (SELECT task_id, status FROM beatx_runs "
    "WHERE task_id = i.task_id LIMIT 1) AS r")


def _db_clock(dialect: str) -> Any:
    """The database server's current time as a column expression (naive UTC, or text on
    SQLite; :func:`_read_db_clock` reads it)."""
    if dialect == "postgresql":
        return literal_column("clock_timestamp() AT TIME ZONE 'UTC'")
    if dialect in ("mysql", "mariadb"):
        return func.utc_timestamp(6)
    # SQLite runs in this process: its clock is this machine's
    return func.strftime("%Y-%m-%d %H:%M:%f", "now")


def _read_db_clock(value: Any) -> datetime:
    """A value of :func:`_db_clock` as an aware UTC time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UTC_TIME = DateTimeUTC()
_PG_DIALECT = postgresql.dialect()


def _naive_utc(value: datetime | None) -> datetime | None:
    """An aware time as the naive UTC value the time columns store (naive input refused)."""
    return _UTC_TIME.process_bind_param(value, _PG_DIALECT)


def _one_of(column: Any, values: Sequence[str]) -> Any:
    """``column IN (...)`` with the values written into the SQL: an executemany cannot
    expand a bound list.  Only for our own constants (run statuses)."""
    for value in values:
        if not value.isidentifier():
            raise ValueError(f"{value!r} is not a status name")
    return column.in_([literal_column(f"'{value}'") for value in values])


@functools.lru_cache(maxsize=8)
def _start_statements(startable: tuple[str, ...]) -> tuple[Any, Any]:
    """The two statements of :meth:`Repository.start_run`, built once: a task waits for
    them, and building a statement costs more than a local round trip."""
    table = Run.__table__
    started = bindparam("b_started", type_=table.c.started_at.type)
    start = (update(table)
             .where(table.c.task_id == bindparam("b_id"), _one_of(table.c.status, startable))
             .values(status="started", started_at=started, worker=bindparam("b_worker"),
                     # A run can start before beat confirms its publish (still pending): it
                     # was sent by then.
                     sent_at=func.coalesce(table.c.sent_at, started)))
    duplicate = (update(table).where(table.c.task_id == bindparam("b_id"))
                 .values(duplicates=table.c.duplicates + 1))
    return start, duplicate


@functools.lru_cache(maxsize=8)
def _finish_statement(open_statuses: tuple[str, ...]) -> Any:
    """The statement of :meth:`Repository.finish_runs`, built once."""
    table = Run.__table__
    started = bindparam("b_started", type_=table.c.started_at.type)
    return (update(table).where(
        table.c.task_id == bindparam("b_id"),
        or_(_one_of(table.c.status, open_statuses),
            and_(_one_of(table.c.status, ("started", "stuck")),
                 table.c.started_at == started)))
        .values(status=bindparam("b_status"),
                started_at=func.coalesce(started, table.c.started_at),
                sent_at=func.coalesce(table.c.sent_at, started),
                finished_at=bindparam("b_finished"), runtime=bindparam("b_runtime"),
                error=bindparam("b_error"), reason=bindparam("b_reason"),
                worker=func.coalesce(table.c.worker, bindparam("b_worker"))))


def json_bytes(value: Any) -> int:
    """About how many bytes ``value`` takes as JSON in a statement."""
    return len(json.dumps(value, default=str))


#: Above this many names, :meth:`Repository.existing_names` reads every name once.
MANY_NAMES = 2_000


def _json_set(column: Any) -> Any:
    """SQL for "this JSON column holds a value": ``None`` is stored as JSON ``null``, not as
    SQL NULL, so ``IS NOT NULL`` alone would match every row (and read them all)."""
    return and_(column.is_not(None), cast(column, Text) != "null")


def _row_bytes(row: Mapping[str, Any]) -> int:
    """About how many bytes a task row takes in a statement, cheaply: its text and its JSON
    fields (each already checked to be within ``JSON_FIELD_MAX``) by their stored length."""
    size = 200
    for value in row.values():
        if isinstance(value, str):
            size += len(value)
        elif isinstance(value, (list, dict)) and value:
            size += len(str(value))  # near its JSON length, at a fraction of the cost
    return size


@functools.cache
def _task_columns() -> dict[str, str]:
    """Column name of each :class:`Task` attribute whose column is named differently."""
    return {attr.key: attr.columns[0].key for attr in Task.__mapper__.column_attrs
            if attr.columns[0].key != attr.key}


def batches_by_size(items: Iterable[T], size_of: Callable[[T], int],
                    limit: int = FLUSH_BYTES) -> Iterator[list[T]]:
    """``items`` in consecutive batches of at most ``limit`` bytes (one item may exceed it)."""
    batch: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if batch and total + size > limit:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch


class _Processed:
    """The bound form of one column's values (its type's bind processor), remembered for
    values that repeat: a bulk insert writes the same ``now``, ``None`` and empty JSON in
    most rows, and the processor (a ``json.dumps``, a time conversion) is most of the cost
    of a row."""

    __slots__ = ("process", "memo")

    def __init__(self, process: Callable[[Any], Any]) -> None:
        self.process = process
        self.memo: dict[Any, Any] = {}

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind is list or kind is dict:
            if value:
                return self.process(value)
            key: Any = (kind, 0)
        elif kind in _MEMO_KINDS or (kind is datetime and value.tzinfo is UTC):
            # Only values whose equality means "stored alike": not floats (-0.0 == 0.0),
            # tuples ((1,) == (True,)) or times in a zone (equal across a DST fold).
            key = (kind, value)
        else:
            return self.process(value)
        try:
            return self.memo[key]
        except KeyError:
            out = self.memo[key] = self.process(value)
            return out


_MEMO_KINDS = (type(None), str, int, bool)


#: From this many rows on, :func:`insert_rows` uses ``COPY`` on PostgreSQL (psycopg 3).
COPY_ROWS = 1000


def insert_rows(connection: Connection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT`` ``rows`` (dicts by column key, all with the same keys) in one executemany
    handed to the driver, each value through its column type's bind processor.

    Core's executemany does the same per row and per value with its generic bookkeeping,
    which is most of a bulk insert's time; the statement and the stored values are the
    same.
    """
    if not rows:
        return
    keys = list(rows[0])
    dialect = connection.dialect
    compiled = table.insert().compile(dialect=dialect, column_keys=keys)
    names = list(compiled.positiontup or ()) if dialect.positional \
        else list(compiled.bind_names.values())
    # Columns the rows leave out that have a constant default get it, as Core would.
    defaults: dict[str, Any] = {}
    for name in names:
        default = table.c[name].default if name not in rows[0] else None
        if default is not None and default.is_scalar:
            defaults[name] = default.arg
    if defaults:
        keys += list(defaults)
        rows = [dict(row, **defaults) for row in rows]
    if set(names) != set(keys) or len(names) != len(keys) or \
            any(len(row) != len(keys) for row in rows):
        # Uneven rows, or defaults computed per row: Core's generic path sorts that out.
        connection.execute(table.insert(), list(rows))
        return
    order = names if dialect.positional else keys
    binders = {k: table.c[k].type.dialect_impl(dialect).bind_processor(dialect)
               for k in order}
    # Columns whose type has no bind processor pass their values as they are.
    plain = [k for k in order if binders[k] is None]
    processed = [(k, _Processed(binder)) for k, binder in binders.items()
                 if binder is not None]
    copy = dialect.name == "postgresql" and dialect.driver == "psycopg" and \
        len(rows) >= COPY_ROWS
    arrays = _unnest_insert(table, tuple(order), dialect) \
        if dialect.name == "postgresql" and not copy and len(rows) > 1 else None
    positional = dialect.positional or copy or arrays is not None
    params: list[Any] = []
    for row in rows:
        values = {k: row[k] for k in plain}
        for k, process in processed:
            values[k] = process(row[k])
        params.append(tuple([values[k] for k in order]) if positional else values)
    if arrays is not None:
        # One statement with an array of values per column: psycopg's executemany runs a
        # statement per row, and that per-row work was most of writing a batch of beat's
        # runs.  Still an ``INSERT``, so cursor events see it.
        connection.exec_driver_sql(arrays, tuple(list(column) for column in zip(*params)))
        return
    if copy:
        # PostgreSQL's COPY: one stream instead of a statement per row.  It goes to the
        # driver's cursor directly, so SQLAlchemy's cursor events do not see it: only bulk
        # inserts take it (beat's run rows, a batch at a time, stay statements).
        quote = dialect.identifier_preparer.quote
        sql = (f"COPY {quote(table.name)} ({', '.join(quote(table.c[k].name) for k in order)})"
               " FROM STDIN")
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(sql) as stream:
                for values in params:
                    stream.write_row(values)
        except dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy raises a driver's error everywhere else (IntegrityError for a
            # duplicate name, OperationalError for a lost connection...), so callers that
            # handle those handle this too.
            lost = dialect.is_disconnect(exc, None, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=lost, dialect=dialect) from exc
        finally:
            cursor.close()
        return
    connection.exec_driver_sql(compiled.string, params)


@functools.lru_cache(maxsize=64)
def _unnest_insert(table: Any, order: tuple[str, ...], dialect: Any) -> str | None:
    """PostgreSQL with psycopg 3: ``INSERT INTO table (...) SELECT * FROM unnest(array,
    ...)`` for the columns ``order`` (one binary array parameter each), or ``None`` when a
    column is JSON (its values go to the driver wrapped, one by one) or a float."""
    if dialect.driver != "psycopg":
        return None  # binary array parameters are psycopg 3's
    columns = [table.c[k] for k in order]
    if any(column.type._type_affinity in (JSON, Float) for column in columns):
        # A float column may hold ints and floats, which one binary array cannot mix.
        return None
    quote = dialect.identifier_preparer.quote
    # Text columns are cast to text[]: a cast to varchar(n)[] would cut a value that is too
    # long, where the INSERT itself refuses it.
    casts = ", ".join(
        "CAST(%b AS {}[])".format("text" if column.type._type_affinity is String
                                  else column.type.compile(dialect=dialect))
        for column in columns)
    return (f"INSERT INTO {quote(table.name)} "
            f"({', '.join(quote(column.name) for column in columns)}) "
            f"SELECT * FROM unnest({casts})")


# Statements beat runs on every change poll or batch of sends, built once (building one
# costs about as much as a round trip to a local database).
_COUNTERS = select(Counter.name, Counter.value).where(
    Counter.name.in_(bindparam("names", expanding=True)))
_RUNS = Run.__table__
#: ``Repository.mark_runs`` of sent runs (only pending ones: a fast worker may already have
#: recorded a later status).
_MARK_SENT = update(_RUNS).where(
    _RUNS.c.task_id.in_(bindparam("ids", expanding=True)), _RUNS.c.status == "pending"
).values(status="sent", sent_at=bindparam("at", type_=_RUNS.c.sent_at.type))
_MARK_SENT_PG = _ArraySQL(
    "UPDATE beatx_runs SET status = 'sent', sent_at = {p} "
    "WHERE task_id = ANY(CAST({p} AS text[])) AND status = 'pending'")
_TASK_ROWS = select(*_TASK_ATTRIBUTES).where(
    Task.name.in_(bindparam("names", expanding=True))).order_by(Task.name)
#: PostgreSQL: the names as one array parameter, so the statement's text is the same for
#: every batch (an ``IN`` list is rendered, with a cast per name, and parsed by the driver
#: again for each length of list).
_TASK_ROWS_PG = select(*_TASK_ATTRIBUTES).where(
    Task.name == any_(bindparam("names", type_=postgresql.ARRAY(String)))
).order_by(Task.name)
_CHANGED_TASKS = select(Task).where(
    Task.revision > bindparam("after"), Task.revision <= bindparam("upto")
).order_by(Task.revision)
_REMOVED_TASKS = select(Tombstone).where(
    Tombstone.revision > bindparam("after"), Tombstone.revision <= bindparam("upto")
).order_by(Tombstone.revision)
_OPEN_ALERTS_OF = select(Alert).where(
    Alert.kind.in_(bindparam("kinds", expanding=True)), Alert.resolved_at.is_(None),
    Alert.task_name.in_(bindparam("names", expanding=True)))


class Repository:
    """Data access for tasks, their versions, the change feed and runs."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Seconds after which the server ends a session that sits idle in a transaction
        #: holding a lock row (:meth:`get_lock` ``for_update``/``shared``): set by beat, so
        #: a leader frozen inside a fenced transaction cannot keep its lease (PostgreSQL:
        #: ``SET LOCAL``, for that transaction only; see
        #: :func:`celery_beatx.store.engine.end_idle_transactions` for MariaDB).
        self.lock_idle_timeout: float | None = None
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(beatx_readonly=True), expire_on_commit=False,
            autoflush=False)

    @contextlib.contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error.

        ``readonly=True`` is a promise not to write; on SQLite it then takes no write lock.
        """
        factory = self._read_sessions if readonly else self._sessions
        with factory() as session, session.begin():
            yield session

    # -- change feed ---------------------------------------------------------------------

    def next_revision(self, session: Session) -> int:
        """Take the next change revision.

        The counter row stays locked until the caller commits, so revisions become visible
        in increasing order and a reader that saw revision N never misses a later commit
        with a smaller number.
        """
        result = session.execute(
            update(Counter).where(Counter.name == REVISION).values(value=Counter.value + 1),
            execution_options=NO_SYNC,
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            session.add(Counter(name=REVISION, value=1))
            session.flush()
            return 1
        return int(session.execute(
            select(Counter.value).where(Counter.name == REVISION)
        ).scalar_one())

    def lock_feed(self, session: Session) -> None:
        """Take the change-feed counter's row lock now (writers take it first, then rows,
        so that two admin writers never wait on each other in opposite orders)."""
        session.execute(select(Counter.value).where(Counter.name == REVISION).with_for_update())

    def bump_counter(self, session: Session, name: str) -> int:
        """Increment counter ``name`` (e.g. :data:`~celery_beatx.states.RUNS_COUNTER`)."""
        session.execute(update(Counter).where(Counter.name == name)
                        .values(value=Counter.value + 1), execution_options=NO_SYNC)
        return int(session.execute(select(Counter.value).where(Counter.name == name))
                   .scalar_one_or_none() or 0)

    def counter(self, session: Session, name: str) -> int:
        """The value of counter ``name`` (0 when it does not exist)."""
        value = session.execute(select(Counter.value).where(Counter.name == name)
                                ).scalar_one_or_none()
        return int(value or 0)

    def counters(self, session: Session, names: Sequence[str]) -> dict[str, int]:
        """The values of counters ``names`` in one read (a missing counter is 0)."""
        found = dict(session.execute(_COUNTERS, {"names": list(names)}).all())
        return {name: int(found.get(name) or 0) for name in names}

    def current_revision(self, session: Session) -> int:
        """The newest revision handed out so far (0 when none)."""
        return self.counter(session, REVISION)

    def changes_since(
        self, session: Session, revision: int, upto: int | None = None
    ) -> tuple[list[Task], list[Tombstone], int]:
        """Tasks changed and removed after ``revision``, and the revision they go up to.

        The counter is read first (or given as ``upto``, read earlier in the same
        transaction) and only changes up to it are returned: every revision up to the
        counter's committed value belongs to a committed transaction (writers hold the
        counter row until they commit), so nothing is skipped even where each statement sees
        a newer snapshot (PostgreSQL's READ COMMITTED).  Later changes come next time.
        """
        if upto is None:
            upto = self.current_revision(session)
        if upto <= revision:
            return [], [], revision
        window = {"after": revision, "upto": upto}
        tasks = list(session.scalars(_CHANGED_TASKS, window))
        gone = list(session.scalars(_REMOVED_TASKS, window))
        return tasks, gone, upto

    # -- tasks ---------------------------------------------------------------------------

    def get_task(self, session: Session, name: str, *, for_update: bool = False) -> Task | None:
        stmt = select(Task).where(Task.name == name)
        if for_update:
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return session.scalars(stmt).one_or_none()

    def get_tasks(self, session: Session, names: Iterable[str], *,
                  for_update: bool = False) -> list[Task]:
        """The tasks of ``names`` that exist (``for_update``: locked, in name order)."""
        found: list[Task] = []
        for chunk in _chunks(sorted(names)):
            stmt = select(Task).where(Task.name.in_(chunk)).order_by(Task.name)
            if for_update:
                stmt = stmt.with_for_update().execution_options(populate_existing=True)
            found.extend(session.scalars(stmt))
        return found

    def task_rows(self, session: Session, names: Iterable[str]) -> list[Any]:
        """The tasks of ``names`` that exist, in name order, as plain rows whose attributes
        are the model's (``row.expires_seconds``, ``row.group``): what beat reads for a
        send, without building (and tracking) an ORM object per task."""
        found: list[Any] = []
        statement = _TASK_ROWS_PG if session.get_bind().dialect.name == "postgresql" \
            else _TASK_ROWS
        for chunk in _chunks(sorted(names)):
            found.extend(session.execute(statement, {"names": list(chunk)}))
        return found

    def existing_names(self, session: Session, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are tasks.  Many names are checked against one read of every
        name (a single index-only pass) rather than in chunks of ``IN`` lists: right after a
        bulk insert PostgreSQL has no statistics yet and scans the table once per chunk."""
        wanted = set(names)
        if len(wanted) > MANY_NAMES:
            rows = session.execute(select(Task.name).execution_options(yield_per=20_000))
            return {name for (name,) in rows if name in wanted}
        found: set[str] = set()
        for chunk in _chunks(list(wanted)):
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

    def schedulable_rows(self, session: Session) -> Iterator[Any]:
        """What beat's start-up load needs of each enabled, unpaused task, as plain rows
        (Core, not ORM objects): ``name, revision, schedule, next_run_at, last_run_at,
        total_run_count, catchup, catchup_limit, jitter, overlap, depends_on, calendar,
        invalid_reason``.  The JSON columns come as their text, so equal schedules are
        parsed once (see :func:`celery_beatx.store.rows.load_schedule_text`)."""
        stmt = select(
            Task.name, Task.revision, cast(Task.schedule, Text), Task.next_run_at,
            Task.last_run_at, Task.total_run_count, Task.catchup, Task.catchup_limit,
            Task.jitter, Task.overlap, cast(Task.depends_on, Text), cast(Task.calendar, Text),
            Task.invalid_reason,
        ).where(Task.enabled.is_(True), Task.paused_at.is_(None))
        result = session.connection().execute(stmt.execution_options(yield_per=LOAD_ROWS))
        for chunk in result.partitions():
            yield from chunk

    def all_tasks(self, session: Session) -> list[Task]:
        return list(session.scalars(select(Task)))

    def add_tasks(self, session: Session, tasks: Sequence[Task]) -> None:
        """Insert new tasks (and their dependency edges) in one flush."""
        self.clear_tombstones(session, [t.name for t in tasks])
        session.add_all(tasks)
        session.flush()  # the edges reference the new rows; no ORM relationship orders them
        for task in tasks:
            for other in dict.fromkeys(task.depends_on or ()):
                session.add(Dependency(task_name=task.name, depends_on=other))
        session.flush()

    def set_dependencies(self, session: Session, name: str, depends_on: Sequence[str]) -> None:
        session.execute(delete(Dependency).where(Dependency.task_name == name),
                        execution_options=NO_SYNC)
        for other in dict.fromkeys(depends_on):
            session.add(Dependency(task_name=name, depends_on=other))
        session.flush()

    def dependency_edges(self, session: Session) -> list[tuple[str, str]]:
        rows = session.execute(select(Dependency.task_name, Dependency.depends_on))
        return [(a, b) for a, b in rows]

    def declared_dependencies(self, session: Session) -> dict[str, Any]:
        """Every task's stored ``depends_on`` (what beat gates on), by name."""
        return {name: deps for name, deps in session.execute(
            select(Task.name, Task.depends_on))}

    def dependants_of(self, session: Session, names: Iterable[str]) -> list[tuple[str, str]]:
        """Edges ``(task, dependency)`` whose dependency is one of ``names``."""
        found: list[tuple[str, str]] = []
        for chunk in _chunks(sorted(set(names))):
            found.extend((a, b) for a, b in session.execute(
                select(Dependency.task_name, Dependency.depends_on)
                .where(Dependency.depends_on.in_(chunk))))
        return found

    def remove_tasks(self, session: Session, names: Sequence[str], revision: int,
                     now: datetime) -> None:
        """Delete tasks with their versions and edges, leaving tombstones so running beats
        drop them (their run history stays)."""
        for chunk in _chunks(list(names)):
            for model, column in ((Dependency, Dependency.task_name),
                                  (TaskVersion, TaskVersion.task_name), (Task, Task.name)):
                session.execute(delete(model).where(column.in_(chunk)),
                                execution_options=NO_SYNC)
        self.clear_tombstones(session, names)
        session.add_all([Tombstone(name=n, revision=revision, removed_at=now) for n in names])
        session.flush()

    def clear_tombstones(self, session: Session, names: Sequence[str]) -> None:
        if session.execute(select(Tombstone.name).limit(1)).first() is None:
            return  # nothing was ever removed (or it was all pruned): skip the deletes
        for chunk in _chunks(list(names)):
            session.execute(delete(Tombstone).where(Tombstone.name.in_(chunk)),
                            execution_options=NO_SYNC)

    def save_states(
        self, session: Session,
        states: Sequence[tuple[str, int, datetime | None, int, datetime | None]],
    ) -> None:
        """Record beat's decision for many tasks, in at most two executemany statements.

        Each item is ``(name, revision, last_run_at, added_runs, next_run_at)``: ``revision``
        is that of the definition beat decided from.  Runs always count (``last_run_at`` and
        ``total_run_count`` move when ``added_runs`` > 0); the next run time is written only
        if the definition is still that revision — a change the admin committed since brings
        its own next run time, and beat must not undo it.  There is no revision bump: beats
        do not need to re-read their own progress.  Rows are touched in name order so that
        concurrent writers lock them in the same order.
        """
        if not states:
            return
        table = Task.__table__
        ordered = sorted(states, key=lambda item: item[0])
        if session.get_bind().dialect.name == "postgresql":
            self._save_states_pg(session, ordered)
            return
        counted = [{"b_name": n, "b_last": last, "b_added": added}
                   for n, _, last, added, _ in ordered if added]
        if counted:
            session.execute(
                update(table).where(table.c.name == bindparam("b_name"))
                .values(last_run_at=bindparam("b_last"),
                        total_run_count=table.c.total_run_count + bindparam("b_added")),
                counted)
        session.execute(
            update(table).where(table.c.name == bindparam("b_name"),
                                table.c.revision == bindparam("b_rev"))
            .values(next_run_at=bindparam("b_next")),
            [{"b_name": n, "b_rev": rev, "b_next": nxt} for n, rev, _, _, nxt in ordered])

    def _save_states_pg(
        self, session: Session,
        ordered: Sequence[tuple[str, int, datetime | None, int, datetime | None]],
    ) -> None:
        """:meth:`save_states` on PostgreSQL: the rows are locked in name order, then updated
        by one statement that joins the states passed as arrays (two statements per batch
        instead of two per task; the statement text is the same for every batch)."""
        names = [n for n, _, _, _, _ in ordered]
        _LOCK_TASKS_PG(session, names)
        _SAVE_STATES_PG(session, names, [rev for _, rev, _, _, _ in ordered],
                        [_naive_utc(last) for _, _, last, _, _ in ordered],
                        [added for _, _, _, added, _ in ordered],
                        [_naive_utc(nxt) for _, _, _, _, nxt in ordered])

    def finish_tasks(self, session: Session, names: Sequence[str], now: datetime) -> list[str]:
        """Finish tasks that have no next run (a one-off whose run left): disable them, or
        delete them when their schedule asks (``cleanup="delete"``).  Tasks changed since
        (a next run time, or an invalid mark) are left alone.  Returns the finished names."""
        rows = []
        for chunk in _chunks(sorted(names)):
            rows.extend(session.execute(
                select(Task.name, Task.schedule).where(
                    Task.name.in_(chunk), Task.enabled.is_(True), Task.next_run_at.is_(None),
                    Task.invalid_reason.is_(None))).all())
        if not rows:
            return []
        delete_names = [n for n, sched in rows
                        if isinstance(sched, dict) and sched.get("cleanup") == "delete"]
        disable_names = [n for n, _ in rows if n not in set(delete_names)]
        if delete_names:
            # A tombstone tells other beats; the run rows stay as history.
            self.lock_feed(session)
            self.remove_tasks(session, delete_names, self.next_revision(session), now)
        for chunk in _chunks(disable_names):
            session.execute(update(Task).where(Task.name.in_(chunk)).values(enabled=False),
                            execution_options=NO_SYNC)
        return [n for n, _ in rows]

    def mark_invalid(self, session: Session, marks: Mapping[str, str | None]) -> None:
        """Set (or, with ``None``, clear) the invalid reason of tasks."""
        for name, reason in marks.items():
            session.execute(update(Task).where(Task.name == name)
                            .values(invalid_reason=reason), execution_options=NO_SYNC)

    # -- versions ------------------------------------------------------------------------

    def add_version(
        self, session: Session, name: str, version: int, definition: dict[str, Any],
        now: datetime, created_by: str | None = None, comment: str = "",
    ) -> None:
        session.add(TaskVersion(
            task_name=name, version=version, definition=definition, created_at=now,
            created_by=created_by, comment=comment,
        ))

    def keep_version(self, session: Session, name: str, version: int,
                     definition: dict[str, Any], at: datetime, created_by: str | None,
                     comment: str) -> None:
        """Store the snapshot of a version being superseded (once: a database written by
        an older release may hold it already)."""
        exists = session.execute(select(TaskVersion.id).where(
            TaskVersion.task_name == name, TaskVersion.version == version)).first()
        if exists is None:
            self.add_version(session, name, version, definition, at, created_by, comment)

    def insert_tasks(self, session: Session, rows: Sequence[dict[str, Any]]) -> None:
        """Insert new tasks (ORM attribute dicts) and their dependency edges with
        executemany statements: no ORM objects, no version snapshots (see
        :meth:`keep_version`)."""
        if not rows:
            return
        self.clear_tombstones(session, [r["name"] for r in rows])
        columns = _task_columns()
        table = Task.__table__
        connection = session.connection()
        # Keys are attribute names; the table wants column names.
        renamed: dict[tuple[str, ...], list[str]] = {}
        values = []
        for row in rows:
            keys = tuple(row)
            names = renamed.get(keys)
            if names is None:
                names = renamed[keys] = [columns.get(key, key) for key in keys]
            values.append(dict(zip(names, row.values())))
        if connection.dialect.name in ("mysql", "mariadb"):
            # The driver sends an executemany INSERT as one statement: keep it within
            # max_allowed_packet (other drivers send rows one by one).
            for batch in batches_by_size(values, _row_bytes):
                insert_rows(connection, table, batch)
        else:
            insert_rows(connection, table, values)
        edges = [{"task_name": r["name"], "depends_on": other} for r in rows
                 for other in dict.fromkeys(r.get("depends_on") or ())]
        if edges:
            session.execute(insert(Dependency), edges, execution_options=NO_SYNC)
        if len(rows) >= MANY_NAMES and connection.dialect.name == "postgresql":
            # Fresh statistics, so that the next lookups by name use the index at once
            # instead of scanning until autovacuum gets to the table (about 0.1 s).
            connection.exec_driver_sql(f"ANALYZE {Task.__tablename__}")

    def versions(self, session: Session, name: str) -> list[TaskVersion]:
        return list(session.scalars(
            select(TaskVersion).where(TaskVersion.task_name == name).order_by(TaskVersion.version)
        ))

    def get_version(self, session: Session, name: str, version: int) -> TaskVersion | None:
        return session.scalars(select(TaskVersion).where(
            TaskVersion.task_name == name, TaskVersion.version == version
        )).one_or_none()

    # -- runs ----------------------------------------------------------------------------

    def add_runs(self, session: Session, runs: Sequence[dict[str, Any]]) -> None:
        """Insert run rows (column dicts) with one executemany, bypassing the ORM."""
        if runs:
            insert_rows(session.connection(), Run.__table__, runs)

    def run_statuses(self, session: Session, task_ids: Iterable[str]) -> dict[str, str]:
        """The status of each of ``task_ids`` that has a run row."""
        found: dict[str, str] = {}
        postgresql = session.get_bind().dialect.name == "postgresql"
        for chunk in _chunks(list(task_ids)):
            rows = _RUN_STATUSES_PG(session, list(chunk)) if postgresql \
                else session.execute(select(Run.task_id, Run.status)
                                     .where(Run.task_id.in_(chunk)))
            found.update((task_id, status) for task_id, status in rows)
        return found

    def existing_run_ids(self, session: Session, task_ids: Iterable[str]) -> set[str]:
        """Which of ``task_ids`` already have a run row (sent before, e.g. by a crashed beat)."""
        found: set[str] = set()
        for chunk in _chunks(list(task_ids)):
            found.update(session.scalars(select(Run.task_id).where(Run.task_id.in_(chunk))))
        return found

    def mark_runs(
        self, session: Session, task_ids: Sequence[str], *, status: str, at: datetime,
        error: str | None = None,
    ) -> None:
        if status == "sent" and error is None:
            # Beat's confirm after every chunk it publishes: one prebuilt statement.
            if session.get_bind().dialect.name == "postgresql":
                _MARK_SENT_PG(session, _naive_utc(at), list(task_ids))
                return
            for chunk in _chunks(list(task_ids)):
                session.execute(_MARK_SENT, {"ids": chunk, "at": at})
            return
        values: dict[str, Any] = {"status": status}
        if status == "sent":
            values["sent_at"] = at
        if error is not None:
            values["error"] = error
        for chunk in _chunks(list(task_ids)):
            # Only pending runs: a fast worker may already have recorded a later status.
            session.execute(update(Run).where(Run.task_id.in_(chunk), Run.status == "pending")
                            .values(**values), execution_options=NO_SYNC)

    def pending_of(self, session: Session, task_ids: Sequence[str]) -> set[str]:
        """The task names of the runs among ``task_ids`` that are still ``pending``."""
        names: set[str] = set()
        for chunk in _chunks(list(task_ids)):
            names.update(session.scalars(select(Run.task_name).where(
                Run.task_id.in_(chunk), Run.status == "pending")))
        return names

    def runs_with_status(self, session: Session, statuses: Sequence[str]) -> list[Run]:
        return list(session.scalars(
            select(Run).where(Run.status.in_(list(statuses))).order_by(Run.id)
        ))

    def runs_for(self, session: Session, name: str, limit: int = 50) -> list[Run]:
        return list(session.scalars(
            select(Run).where(Run.task_name == name)
            .order_by(Run.scheduled_at.desc(), Run.id.desc()).limit(limit)
        ))

    def prune_runs(self, session: Session, name: str, keep: int) -> None:
        """Delete all but the newest ``keep`` runs of ``name``."""
        cutoff = session.scalars(
            select(Run.id).where(Run.task_name == name).order_by(Run.id.desc())
            .offset(keep).limit(1)
        ).first()
        if cutoff is not None:
            # A pending run is not history yet: it still has to be sent.
            session.execute(delete(Run).where(Run.task_name == name, Run.id <= cutoff,
                                              Run.status != "pending"),
                            execution_options=NO_SYNC)

    # -- outcomes written by the worker hook (celery_beatx.track) -----------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """One transaction on a bare connection, without the ORM session (the worker hook's
        path: a task waits for it).  The run methods below accept it in place of a
        session."""
        with self.engine.begin() as conn:
            yield conn

    def start_run(self, session: Session | Connection, task_id: str, *, started_at: datetime,
                  worker: str | None, startable: Sequence[str]) -> str:
        """Move run ``task_id`` to ``started`` if its status is one of ``startable``.

        The update is conditional, so of several deliveries of one task id only one wins.
        Returns ``"started"`` (this delivery won), ``"duplicate"`` (the run exists in
        another state: its ``duplicates`` count was incremented) or ``"unknown"`` (no such
        run: not a celery-beatx send, or its history was pruned).
        """
        start, duplicate = _start_statements(tuple(startable))
        won = session.execute(start, {"b_id": task_id, "b_started": started_at,
                                      "b_worker": worker})
        if won.rowcount:  # type: ignore[attr-defined]
            return "started"
        seen = session.execute(duplicate, {"b_id": task_id})
        return "duplicate" if seen.rowcount else "unknown"  # type: ignore[attr-defined]

    def finish_runs(self, session: Session | Connection, outcomes: Sequence[Mapping[str, Any]],
                    *, open_statuses: Sequence[str]) -> None:
        """Record outcomes reported by workers, in one executemany.

        Each outcome is a mapping with ``task_id``, ``status``, ``started_at`` (when this
        delivery started, or ``None`` when not known), ``finished_at``, ``runtime``,
        ``error``, ``reason`` and ``worker``.  An outcome is written when the run is still
        open (a status in ``open_statuses``: its start may not have been recorded), or when
        it is ``started``/``stuck`` by this very delivery (same ``started_at``): the outcome
        of a duplicate delivery never overwrites the run another delivery is executing.
        """
        if not outcomes:
            return
        session.execute(
            _finish_statement(tuple(open_statuses)),
            [{"b_id": o["task_id"], "b_status": o["status"], "b_started": o["started_at"],
              "b_finished": o["finished_at"], "b_runtime": o["runtime"],
              "b_error": o["error"], "b_reason": o["reason"], "b_worker": o["worker"]}
             for o in outcomes])

    def end_runs(self, session: Session | Connection, endings: Sequence[Mapping[str, Any]], *,
                 open_statuses: Sequence[str]) -> None:
        """Record runs ended from outside their execution: revoked (or expired) by the
        worker, or failed because the process executing them was lost or killed at its hard
        time limit.  Each ending has ``task_id``, ``status``, ``finished_at``, ``error`` and
        ``reason``; it applies to a run not finished yet, started or not."""
        if not endings:
            return
        table = Run.__table__
        session.execute(
            update(table).where(table.c.task_id == bindparam("b_id"),
                                _one_of(table.c.status, (*open_statuses, "started")))
            .values(status=bindparam("b_status"), finished_at=bindparam("b_finished"),
                    error=bindparam("b_error"), reason=bindparam("b_reason")),
            [{"b_id": e["task_id"], "b_status": e["status"], "b_finished": e["finished_at"],
              "b_error": e["error"], "b_reason": e["reason"]} for e in endings])

    def ping(self, session: Session | Connection) -> None:
        """One round trip (a database that answers is back)."""
        session.execute(select(literal_column("1"))).scalar_one()

    # -- history and statistics ----------------------------------------------------------

    def run_counts(self, session: Session, name: str) -> dict[str, int]:
        """How many runs of ``name`` are kept in each status."""
        return {status: int(count) for status, count in session.execute(
            select(Run.status, func.count()).where(Run.task_name == name)
            .group_by(Run.status))}

    def runtimes(self, session: Session, name: str, statuses: Sequence[str]) -> list[float]:
        """Runtimes of the runs of ``name`` in ``statuses`` (those that have one)."""
        return [float(r) for r in session.scalars(
            select(Run.runtime).where(Run.task_name == name, Run.status.in_(list(statuses)),
                                      Run.runtime.is_not(None)))]

    def last_error(self, session: Session, name: str) -> tuple[str, datetime | None] | None:
        """The newest error text of ``name`` and when it happened."""
        row = session.execute(
            select(Run.error, func.coalesce(Run.finished_at, Run.sent_at, Run.created_at))
            .where(Run.task_name == name, Run.error.is_not(None))
            .order_by(Run.id.desc()).limit(1)).first()
        return (row[0], row[1]) if row is not None else None

    def duplicate_total(self, session: Session, name: str) -> int:
        """Deliveries of ``name``'s runs the worker hook saw after the first."""
        return int(session.execute(select(func.coalesce(func.sum(Run.duplicates), 0))
                                   .where(Run.task_name == name)).scalar_one())

    def has_runs(self, session: Session, name: str) -> bool:
        return session.execute(select(Run.id).where(Run.task_name == name).limit(1)
                               ).first() is not None

    def get_run(self, session: Session, task_id: str) -> Run | None:
        return session.scalars(select(Run).where(Run.task_id == task_id)).one_or_none()

    # -- stuck runs ------------------------------------------------------------------------

    def mark_stuck(self, session: Session, now: datetime, thresholds: Mapping[str, float],
                   default: float | None = None) -> list[tuple[str, str, str]]:
        """Mark runs ``sent`` longer than their task's threshold without starting, and runs
        ``started`` longer than it without finishing, as ``stuck``.

        ``thresholds`` maps task names to seconds (``stuck_seconds`` of their alerts);
        ``default`` applies to the other tasks (``None``: they are not checked).  One
        query reads the candidates, runs sent or started longer ago than the *smallest*
        threshold (few: only runs in flight have those statuses, and ``status`` is
        indexed); the per-task threshold is applied to them here, so thousands of tasks cost
        no more statements.  Returns ``(task_name, task_id, previous status)`` of each run
        marked.
        """
        limits = [float(s) for s in thresholds.values() if s is not None and s > 0]
        if default is not None and default > 0:
            limits.append(float(default))
        if not limits:
            return []
        cutoff = now - timedelta(seconds=min(limits))
        since = func.coalesce(Run.sent_at, Run.created_at)
        candidates = session.execute(
            select(Run.task_name, Run.task_id, Run.status, since, Run.started_at).where(
                or_(and_(Run.status == "sent", since <= cutoff),
                    and_(Run.status == "started", Run.started_at <= cutoff)))).all()
        groups: dict[tuple[str, float], list[tuple[str, str]]] = {}
        for name, task_id, status, sent_at, started_at in candidates:
            limit = thresholds.get(name, default)
            if limit is None or limit <= 0:
                continue
            moment = started_at if status == "started" else sent_at
            if moment is None or moment > now - timedelta(seconds=limit):
                continue
            groups.setdefault((status, float(limit)), []).append((name, task_id))
        marked: list[tuple[str, str, str]] = []
        for (status, limit), runs in sorted(groups.items()):
            what = "started" if status == "sent" else "finished"
            reason = f"{status} and not {what} within {limit:g} s"
            for chunk in _chunks(runs):
                result = session.execute(
                    update(Run).where(Run.task_id.in_([t for _, t in chunk]),
                                      Run.status == status)
                    .values(status="stuck", reason=reason), execution_options=NO_SYNC)
                moved = int(result.rowcount or 0)  # type: ignore[attr-defined]
                if moved == len(chunk):
                    marked.extend((n, t, status) for n, t in chunk)
                elif moved:  # some changed meanwhile (a late start or outcome): ask which
                    done = set(session.scalars(select(Run.task_id).where(
                        Run.task_id.in_([t for _, t in chunk]), Run.status == "stuck",
                        Run.reason == reason)))
                    marked.extend((n, t, status) for n, t in chunk if t in done)
        return marked

    # -- alerts --------------------------------------------------------------------------

    def add_alert(self, session: Session, *, level: str, kind: str, task_name: str | None,
                  message: str, at: datetime, data: dict[str, Any] | None = None) -> int:
        """Store an alert; returns its id."""
        row = Alert(level=level, kind=kind, task_name=task_name, message=message, at=at,
                    data=data)
        session.add(row)
        session.flush()
        return int(row.id)

    def prune_alerts(self, session: Session, before: datetime, limit: int = 5_000) -> int:
        """Delete up to ``limit`` alerts raised before ``before`` that are over: resolved
        conditions and every event (``missed_schedule``, ``leader_lost``, the ``resolved``
        records...).  Open conditions stay whatever their age.  Returns how many."""
        from ..alerts import CONDITION_KINDS

        ids = list(session.scalars(select(Alert.id).where(
            Alert.at < before,
            or_(Alert.resolved_at.is_not(None), Alert.kind.not_in(CONDITION_KINDS)))
            .order_by(Alert.id).limit(limit)))
        if ids:
            session.execute(delete(Alert).where(Alert.id.in_(ids)))
        return len(ids)

    def alerts(self, session: Session, *, levels: Sequence[str] | None = None,
               since: datetime | None = None, task: str | None = None,
               limit: int = 1000) -> list[Alert]:
        stmt = select(Alert).order_by(Alert.at.desc(), Alert.id.desc()).limit(limit)
        if levels is not None:
            stmt = stmt.where(Alert.level.in_(list(levels)))
        if since is not None:
            stmt = stmt.where(Alert.at >= since)
        if task is not None:
            stmt = stmt.where(Alert.task_name == task)
        return list(session.scalars(stmt))

    def open_alerts(self, session: Session, kinds: Sequence[str], *,
                    names: Iterable[str] | None = None, limit: int | None = None
                    ) -> list[Alert]:
        """Alerts of ``kinds`` not resolved yet (of the tasks ``names``, or all), newest
        first."""
        if names is None:
            stmt = select(Alert).where(Alert.kind.in_(list(kinds)), Alert.resolved_at.is_(None)
                                       ).order_by(Alert.at.desc(), Alert.id.desc())
            return list(session.scalars(stmt.limit(limit) if limit else stmt))
        found: list[Alert] = []
        for chunk in _chunks(sorted(set(names))):
            found.extend(session.scalars(_OPEN_ALERTS_OF, {"kinds": list(kinds),
                                                           "names": chunk}))
        return found

    def count_open_alerts(self, session: Session, kinds: Sequence[str]) -> int:
        return int(session.execute(select(func.count()).select_from(Alert).where(
            Alert.kind.in_(list(kinds)), Alert.resolved_at.is_(None))).scalar_one())

    def resolve_alerts(self, session: Session, ids: Sequence[int], at: datetime) -> None:
        """Mark alerts resolved at ``at``."""
        for chunk in _chunks(list(ids)):
            session.execute(update(Alert).where(Alert.id.in_(chunk), Alert.resolved_at.is_(None))
                            .values(resolved_at=at), execution_options=NO_SYNC)

    # -- what the alert rules read -------------------------------------------------------

    def runs_finished_since(self, session: Session, since: datetime, limit: int = 5000
                            ) -> list[Any]:
        """Runs with an outcome time after ``since`` (oldest first): ``task_id``,
        ``task_name``, ``status``, ``finished_at``, ``runtime``, ``error``."""
        return list(session.execute(
            select(Run.task_id, Run.task_name, Run.status, Run.finished_at, Run.runtime,
                   Run.error)
            .where(Run.finished_at > since).order_by(Run.finished_at, Run.id).limit(limit)))

    def runs_created_since(self, session: Session, since: datetime, kinds: Sequence[str],
                           limit: int = 5000) -> list[Any]:
        """Runs of ``kinds`` recorded after ``since`` (oldest first): ``task_id``,
        ``task_name``, ``kind``, ``status``, ``scheduled_at``, ``created_at``, ``reason``."""
        return list(session.execute(
            select(Run.task_id, Run.task_name, Run.kind, Run.status, Run.scheduled_at,
                   Run.created_at, Run.reason)
            .where(Run.created_at > since, Run.kind.in_(list(kinds)))
            .order_by(Run.created_at, Run.id).limit(limit)))

    def runs_in_status(self, session: Session, statuses: Sequence[str], *,
                       since: datetime | None = None, limit: int = 1000) -> list[Any]:
        """Runs in ``statuses`` (recorded after ``since``), newest first: ``task_id``,
        ``task_name``, ``status``, ``scheduled_at``, ``sent_at``, ``started_at``,
        ``created_at``, ``reason``, ``error``."""
        stmt = select(Run.task_id, Run.task_name, Run.status, Run.scheduled_at, Run.sent_at,
                      Run.started_at, Run.created_at, Run.reason, Run.error
                      ).where(Run.status.in_(list(statuses)))
        if since is not None:
            stmt = stmt.where(Run.created_at > since)
        return list(session.execute(stmt.order_by(Run.id.desc()).limit(limit)))

    def count_in_status(self, session: Session, statuses: Sequence[str], *,
                        since: datetime | None = None) -> int:
        stmt = select(func.count()).select_from(Run).where(Run.status.in_(list(statuses)))
        if since is not None:
            stmt = stmt.where(Run.created_at > since)
        return int(session.execute(stmt).scalar_one())

    def latest_outcomes(self, session: Session, names: Iterable[str], statuses: Sequence[str],
                        limit: int) -> dict[str, list[Any]]:
        """The newest ``limit`` runs of each task in ``statuses`` that have an outcome time,
        newest first: ``status``, ``finished_at``, ``runtime``, ``error``."""
        found: dict[str, list[Any]] = {}
        for chunk in _chunks(sorted(set(names))):
            rank = func.row_number().over(partition_by=Run.task_name,
                                          order_by=(Run.finished_at.desc(), Run.id.desc()))
            inner = (select(Run.task_name, Run.status, Run.finished_at, Run.runtime,
                            Run.error, rank.label("rank"))
                     .where(Run.task_name.in_(chunk), Run.status.in_(list(statuses)),
                            Run.finished_at.is_not(None)).subquery())
            for row in session.execute(
                    select(inner.c.task_name, inner.c.status, inner.c.finished_at,
                           inner.c.runtime, inner.c.error)
                    .where(inner.c.rank <= limit)
                    .order_by(inner.c.task_name, inner.c.rank)):
                found.setdefault(row.task_name, []).append(row)
        return found

    def alert_settings(self, session: Session, names: Iterable[str]) -> dict[str, Any]:
        """The stored ``alerts`` field of each of ``names`` that exists."""
        found: dict[str, Any] = {}
        for chunk in _chunks(sorted(set(names))):
            found.update((n, a) for n, a in session.execute(
                select(Task.name, Task.alerts).where(Task.name.in_(chunk))))
        return found

    def schedule_rows(self, session: Session) -> list[Any]:
        """What beat will fire: enabled, unpaused, schedulable tasks with ``name``,
        ``schedule``, ``calendar``, ``next_run_at``, ``last_run_at`` and ``jitter``."""
        return list(session.execute(
            select(Task.name, Task.schedule, Task.calendar, Task.next_run_at,
                   Task.last_run_at, Task.jitter)
            .where(Task.enabled.is_(True), Task.paused_at.is_(None),
                   Task.invalid_reason.is_(None)).order_by(Task.name)))

    # -- what health() reads ---------------------------------------------------------------

    def overdue_tasks(self, session: Session, before: datetime, limit: int = 1000
                      ) -> list[Any]:
        """Enabled, unpaused, valid tasks whose next run is before ``before``, oldest first:
        ``name``, ``next_run_at``, ``jitter``."""
        return list(session.execute(
            select(Task.name, Task.next_run_at, Task.jitter).where(
                Task.next_run_at < before, Task.enabled.is_(True), Task.paused_at.is_(None),
                Task.invalid_reason.is_(None))
            .order_by(Task.next_run_at).limit(limit)))

    def invalid_tasks(self, session: Session, limit: int = 1000) -> list[Any]:
        """Tasks beat cannot schedule: ``name``, ``invalid_reason``."""
        return list(session.execute(
            select(Task.name, Task.invalid_reason).where(Task.invalid_reason.is_not(None))
            .order_by(Task.name).limit(limit)))

    def outcome_needs(self, session: Session) -> tuple[list[str], list[Any]]:
        """Enabled tasks whose send-time policies read run outcomes (an overlap rule or a
        dependency), and ``(name, alerts)`` of enabled tasks that have their own alerts."""
        gated = set(session.scalars(select(Task.name).where(
            Task.enabled.is_(True), Task.overlap != "allow")))
        gated.update(session.scalars(select(Dependency.task_name).distinct()))
        alerting = list(session.execute(select(Task.name, Task.alerts).where(
            Task.enabled.is_(True), _json_set(Task.alerts))))
        return sorted(gated), alerting

    def count_enabled(self, session: Session) -> int:
        return int(session.execute(select(func.count()).select_from(Task).where(
            Task.enabled.is_(True))).scalar_one())

    def last_outcome_at(self, session: Session) -> datetime | None:
        """When the newest outcome was recorded (its finish time)."""
        return session.execute(select(func.max(Run.finished_at))).scalar_one_or_none()

    def oldest_unstarted_since(self, session: Session, before: datetime) -> datetime | None:
        """The send time of some run still ``sent`` (no start recorded) that was sent before
        ``before``, or None (one indexed probe, not a scan)."""
        return session.execute(
            select(Run.sent_at).where(Run.status == "sent", Run.sent_at < before).limit(1)
        ).scalar_one_or_none()

    def task_counts(self, session: Session) -> dict[str, int]:
        """How many tasks are ``active`` (enabled, not paused, schedulable), ``paused``,
        ``invalid`` (enabled but beat cannot schedule them) and ``disabled``."""
        enabled = Task.enabled.is_(True)
        unpaused = Task.paused_at.is_(None)
        valid = Task.invalid_reason.is_(None)

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        active, paused, invalid, disabled = session.execute(select(
            count(enabled & unpaused & valid), count(enabled & ~unpaused),
            count(enabled & unpaused & ~valid), count(~enabled))).one()
        return {"active": int(active), "paused": int(paused), "invalid": int(invalid),
                "disabled": int(disabled)}

    # -- database time -------------------------------------------------------------------

    def db_now(self, session: Session) -> datetime:
        """The database server's current time, aware UTC (leases are timed by it, so beats
        on machines whose clocks disagree still agree on who holds a lease)."""
        dialect = session.get_bind().dialect.name
        return _read_db_clock(session.execute(select(_db_clock(dialect))).scalar_one())

    # -- locks ---------------------------------------------------------------------------

    def get_lock(self, session: Session, name: str, *, for_update: bool = False,
                 shared: bool = False) -> Lock | None:
        stmt = select(Lock).where(Lock.name == name)
        if for_update or shared:
            stmt = stmt.with_for_update(read=shared and not for_update)
            idle = self._idle_setting()
            if idle is not None:
                session.execute(select(idle))
        return session.scalars(stmt).one_or_none()

    def _idle_setting(self) -> Any:
        """PostgreSQL, with :attr:`lock_idle_timeout`: the expression that sets this
        transaction's ``idle_in_transaction_session_timeout`` (``SET LOCAL``), so that a
        frozen holder of a locked lease row is disconnected; otherwise ``None``."""
        if self.lock_idle_timeout is None or self.engine.dialect.name != "postgresql":
            return None
        milliseconds = max(1, round(self.lock_idle_timeout * 1000))
        return func.set_config("idle_in_transaction_session_timeout", str(milliseconds),
                               True)

    def insert_lock(self, session: Session, name: str, owner: str, now: datetime,
                    expires_at: datetime, host: str | None, pid: int | None) -> bool:
        """Create the lock row with token 1; False when another process created it first."""
        try:
            with session.begin_nested():
                session.execute(insert(Lock).values(
                    name=name, owner=owner, acquired_at=now, expires_at=expires_at, token=1,
                    host=host, pid=pid))
        except IntegrityError:
            return False
        return True

    def take_lock(self, session: Session, lock: Lock, owner: str, now: datetime,
                  expires_at: datetime, host: str | None, pid: int | None) -> int:
        """Give ``lock`` (held for update) to ``owner`` with the next fencing token."""
        lock.token = (lock.token or 0) + 1
        lock.owner = owner
        lock.acquired_at = now
        lock.expires_at = expires_at
        lock.host = host
        lock.pid = pid
        session.flush()
        return lock.token

    def fence(self, session: Session, name: str, owner: str, token: int) -> bool:
        """True when ``owner`` holds lease ``name`` with ``token`` and it has not expired.

        The row stays share-locked until the caller's transaction ends, so a new holder
        cannot take the lease between this check and the caller's commit: writes made
        under a passing fence were made by the holder.  One statement reads the row, the
        database's time and (PostgreSQL) sets the idle timeout: it runs in every write
        transaction of the send path.
        """
        columns = [Lock.owner, Lock.token, Lock.expires_at,
                   _db_clock(session.get_bind().dialect.name)]
        idle = self._idle_setting()
        if idle is not None:
            columns.append(idle)
        row = session.execute(select(*columns).where(Lock.name == name)
                              .with_for_update(read=True)).first()
        if row is None or row[0] != owner or row[1] != token:
            return False
        return row[2] is not None and row[2] > _read_db_clock(row[3])

    # -- beat instances ------------------------------------------------------------------

    def heartbeat(self, session: Session, instance_id: str, *, role: str, started_at: datetime,
                  host: str | None, pid: int | None, every: float | None = None) -> datetime:
        """Record that ``instance_id`` is alive (database time); returns that time.

        ``every``: how often it writes this heartbeat (seconds).
        """
        now = self.db_now(session)
        values = {"heartbeat_at": now, "role": role, "is_leader": role == "leader",
                  "stopped_at": None, "host": host, "pid": pid, "heartbeat_every": every}
        result = session.execute(update(Instance).where(Instance.instance_id == instance_id)
                                 .values(**values), execution_options=NO_SYNC)
        if result.rowcount == 0:  # type: ignore[attr-defined]
            session.execute(insert(Instance).values(instance_id=instance_id,
                                                    started_at=started_at, **values))
        return now

    def mark_instance_stopped(self, session: Session, instance_id: str) -> None:
        session.execute(update(Instance).where(Instance.instance_id == instance_id)
                        .values(stopped_at=self.db_now(session), role="stopped",
                                is_leader=False), execution_options=NO_SYNC)

    def instances(self, session: Session) -> list[Instance]:
        return list(session.scalars(select(Instance).order_by(Instance.instance_id)))

    # -- recovery ------------------------------------------------------------------------

    def pending_runs(self, session: Session) -> list[Run]:
        """Runs recorded but not known to be sent, oldest first."""
        return list(session.scalars(
            select(Run).where(Run.status == "pending").order_by(Run.id)))

    # -- run states for policies (overlap, dependencies, retries, buffered runs) ----------

    def running_counts(self, session: Session, names: Sequence[str]) -> dict[str, int]:
        """How many runs of each task are still on their way or executing."""
        from ..states import RUNNING

        found: dict[str, int] = {}
        for chunk in _chunks(list(names)):
            for name, count in session.execute(
                    select(Run.task_name, func.count()).where(
                        Run.task_name.in_(chunk), Run.status.in_(RUNNING))
                    .group_by(Run.task_name)):
                found[name] = int(count)
        return found

    def names_with_status(self, session: Session, names: Sequence[str], status: str
                          ) -> set[str]:
        """Which of ``names`` have a run in ``status``."""
        found: set[str] = set()
        for chunk in _chunks(list(names)):
            found.update(session.scalars(select(Run.task_name).where(
                Run.task_name.in_(chunk), Run.status == status).distinct()))
        return found

    def last_sent_at(self, session: Session, names: Sequence[str]) -> dict[str, datetime]:
        """When each task's most recent run was published."""
        found: dict[str, datetime] = {}
        for chunk in _chunks(list(names)):
            for name, at in session.execute(
                    select(Run.task_name, func.max(Run.sent_at)).where(
                        Run.task_name.in_(chunk), Run.sent_at.is_not(None))
                    .group_by(Run.task_name)):
                if at is not None:
                    found[name] = at
        return found

    def latest_finished(self, session: Session, names: Sequence[str]
                        ) -> dict[str, tuple[str, datetime]]:
        """Each task's latest finished run: ``(status, finished_at)``."""
        found: dict[str, tuple[str, datetime]] = {}
        for chunk in _chunks(list(names)):
            latest = (select(Run.task_name.label("n"), func.max(Run.finished_at).label("m"))
                      .where(Run.task_name.in_(chunk), Run.finished_at.is_not(None))
                      .group_by(Run.task_name).subquery())
            for name, status, at in session.execute(
                    select(Run.task_name, Run.status, Run.finished_at).join(
                        latest, (Run.task_name == latest.c.n) & (Run.finished_at == latest.c.m))
                    .order_by(Run.id)):
                found[name] = (status, at)
        return found

    def set_status(self, session: Session, task_ids: Sequence[str], *, old: Sequence[str],
                   new: str, reason: str | None = None) -> int:
        """Move runs from one of the ``old`` statuses to ``new``; returns how many moved."""
        values: dict[str, Any] = {"status": new}
        if reason is not None:
            values["reason"] = reason
        moved = 0
        for chunk in _chunks(list(task_ids)):
            result = session.execute(update(Run).where(Run.task_id.in_(chunk),
                                                       Run.status.in_(list(old)))
                                     .values(**values), execution_options=NO_SYNC)
            moved += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return moved

    def undecided_failures(self, session: Session, limit: int = 500) -> list[Run]:
        """Failed runs (or failed publishes) whose retry has not been decided yet."""
        from ..states import RETRYABLE

        return list(session.scalars(
            select(Run).where(Run.status.in_(RETRYABLE), Run.retry_state.is_(None))
            .order_by(Run.id).limit(limit)))

    def set_retry_state(self, session: Session, task_id: str, state: str) -> None:
        session.execute(update(Run).where(Run.task_id == task_id).values(retry_state=state),
                        execution_options=NO_SYNC)

    def due_waiting(self, session: Session, now: datetime, limit: int = 500) -> list[Run]:
        """Retries whose delay has passed."""
        from ..states import WAITING

        return list(session.scalars(
            select(Run).where(Run.status == WAITING, Run.retry_at <= now)
            .order_by(Run.retry_at, Run.id).limit(limit)))

    def next_waiting_at(self, session: Session) -> datetime | None:
        """When the earliest waiting retry is due."""
        from ..states import WAITING

        return session.execute(select(func.min(Run.retry_at)).where(Run.status == WAITING)
                               ).scalar_one_or_none()

    def releasable_buffered(self, session: Session, limit: int = 500) -> list[Run]:
        """Buffered runs (``overlap="buffer_one"``) whose task has nothing running now."""
        from sqlalchemy.orm import aliased

        from ..states import BUFFERED, RUNNING

        other = aliased(Run)
        busy = select(other.id).where(other.task_name == Run.task_name,
                                      other.status.in_(RUNNING)).exists()
        return list(session.scalars(
            select(Run).where(Run.status == BUFFERED, ~busy).order_by(Run.id).limit(limit)))

    def stuck_thresholds(self, session: Session) -> dict[str, float]:
        """``alerts.stuck_seconds`` of every enabled task that sets one."""
        found: dict[str, float] = {}
        for name, alerts in session.execute(
                select(Task.name, Task.alerts).where(
                    cast(Task.alerts, Text).like("%stuck_seconds%"), Task.enabled.is_(True))):
            value = alerts.get("stuck_seconds") if isinstance(alerts, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                found[name] = float(value)
        return found
