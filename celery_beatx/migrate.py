"""Schema management: upgrade to head, report the current revision, check it.

Several processes starting at once on an empty or old database migrate exactly once: the
upgrade runs under a database-level lock (advisory lock on PostgreSQL, ``GET_LOCK`` on
MariaDB/MySQL, the write lock of ``BEGIN IMMEDIATE`` on SQLite) and re-reads the revision
once it holds the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from .errors import SchemaOutOfDate

VERSION_TABLE = "beatx_alembic_version"
_LOCK_NAME = "celery_beatx_migrate"
_PG_LOCK_KEY = 0x6265617478  # "beatx"
MIGRATE_COMMAND = "celery -A <your app> beatx migrate"


def _script_location() -> str:
    from . import migrations

    return os.path.dirname(os.path.abspath(migrations.__file__))


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` pointing at the shipped migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest revision shipped with this release."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return _current(conn)


def _current(conn: Connection) -> str | None:
    # Alembic announces its "Context impl" at INFO each time a context is made; at every
    # beat start that says nothing: only a real upgrade is worth a line.
    quiet = logging.getLogger("alembic.runtime.migration")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))
    try:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
    finally:
        quiet.setLevel(level)


def is_current(engine: Engine) -> bool:
    """True when the database schema is at this release's head."""
    return current_revision(engine) == head_revision()


@contextlib.contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
    elif dialect in ("mysql", "mariadb"):
        got = conn.execute(text("SELECT GET_LOCK(:n, 300)"), {"n": _LOCK_NAME}).scalar()
        if got != 1:
            raise TimeoutError("could not take the celery-beatx migration lock in 300 s")
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
    else:
        # SQLite: the engine begins every transaction with BEGIN IMMEDIATE, which holds the
        # database write lock for the whole upgrade transaction.
        yield


@contextlib.contextmanager
def dependency_edges_kept(bind: Connection) -> Iterator[None]:
    """For a migration step that rebuilds ``beatx_tasks`` (SQLite alters a table that way):
    dropping the old table cascades to ``beatx_dependencies`` when foreign keys are on,
    which a migration run inside a transaction cannot turn off (:func:`upgrade` turns them
    off around its own).  Whatever edges the step deleted are put back afterwards."""
    query = text("SELECT task_name, depends_on FROM beatx_dependencies")
    edges = [tuple(row) for row in bind.execute(query)]
    yield
    kept = {tuple(row) for row in bind.execute(query)}
    lost = [{"a": a, "b": b} for a, b in edges if (a, b) not in kept]
    if lost:
        bind.execute(text("INSERT INTO beatx_dependencies (task_name, depends_on) "
                          "VALUES (:a, :b)"), lost)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision`` (default: head); return the new revision.

    Safe to call from several processes at once.
    """
    from alembic import command

    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # A migration that rebuilds a table (SQLite's way to alter a column) drops the
            # old one: with foreign keys on, that deletes the rows referencing it (ON
            # DELETE CASCADE).  They can only be turned off outside a transaction.
            driver = conn.connection.dbapi_connection  # autocommit: SQLAlchemy would BEGIN
            assert driver is not None
            enforced = driver.execute("PRAGMA foreign_keys").fetchone()[0]
            driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    if _current(conn) != head_revision() or revision != "head":
                        command.upgrade(alembic_config(conn), revision)
            finally:
                with contextlib.suppress(Exception):  # never hide the migration's error
                    driver.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
            return _current(conn)
        with _migration_lock(conn):
            if conn.in_transaction():
                conn.commit()
            if _current(conn) != head_revision() or revision != "head":
                if conn.in_transaction():
                    conn.commit()
                with conn.begin():
                    command.upgrade(alembic_config(conn), revision)
            if conn.in_transaction():
                conn.commit()
            return _current(conn)


def ensure_schema(engine: Engine, auto_migrate: bool) -> None:
    """Upgrade when ``auto_migrate``; otherwise raise :class:`SchemaOutOfDate` if behind."""
    if auto_migrate:
        upgrade(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the celery-beatx schema is at {current or 'nothing (empty database)'} but this "
            f"release needs {head}, and beatx_auto_migrate is off: run `{MIGRATE_COMMAND}`"
        )
