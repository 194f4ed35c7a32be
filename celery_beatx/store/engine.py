"""Engine creation with the per-dialect settings celery-beatx relies on."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from .types import json_dumps, tolerant_json_loads

logger = logging.getLogger("celery_beatx")


def make_engine(url: str, options: dict[str, Any] | None = None) -> Engine:
    """Create an engine for ``url``.

    SQLite gets WAL journaling and a busy timeout so that a beat and an admin process can
    share one file; on other dialects a connection that sat unused in the pool is pinged
    before use, so that a restarted server is survived (``pool_pre_ping`` in ``options``
    replaces this with SQLAlchemy's ping on every checkout, or none).
    """
    opts: dict[str, Any] = dict(options or {})
    # A hand-edited or truncated JSON value is one task's problem, never the query's.
    opts.setdefault("json_deserializer", tolerant_json_loads)
    opts.setdefault("json_serializer", json_dumps)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        opts.setdefault("connect_args", {}).setdefault("timeout", 30)
        engine = create_engine(url, **opts)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if parsed.database not in (None, "", ":memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock at BEGIN: a deferred transaction that upgrades to a write
            # later fails at once with SQLITE_BUSY instead of waiting for the lock.  Readers
            # (marked ``beatx_readonly``) need no lock under WAL and must not queue behind
            # a long admin write.
            readonly = conn.get_execution_options().get("beatx_readonly")
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    if "pool_pre_ping" in opts:
        return create_engine(url, **opts)  # the caller's choice
    engine = create_engine(url, **opts)
    _ping_when_idle(engine, PING_AFTER_IDLE)
    return engine


#: Seconds a pooled connection may sit unused before it is checked (pinged) on checkout.
PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: Engine, seconds: float) -> None:
    """Ping a pooled connection on checkout when it sat unused for more than ``seconds``,
    so that a server restarted while beat slept is survived (a stale connection is
    replaced), as ``pool_pre_ping`` does for every checkout.

    A burst checks a connection out for each of its transactions, two or three per hundred
    sends: pinging each of those costs about a millisecond and finds nothing a failing
    statement would not (a server that goes away in the middle of a burst fails that
    transaction, which beat's outage handling retries on a new connection, since
    SQLAlchemy drops the pool's connections at the first disconnect it sees).
    """
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkin")
    def _note_use(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["beatx_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        used = record.info.get("beatx_used")
        if used is not None and time.monotonic() - used <= seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(str(exc)) from exc  # the pool reconnects
            raise
        if not alive:
            raise DisconnectionError("the connection did not answer a ping")


def end_idle_transactions(engine: Engine, seconds: float) -> None:
    """Have a MariaDB server end this engine's sessions that sit idle inside a transaction
    for longer than ``seconds`` (``idle_transaction_timeout``).

    Beat's leader holds the lease row locked for the length of each fenced transaction; a
    leader frozen inside one (SIGSTOP, a VM pause) would otherwise keep that lock, and so
    its lease, for as long as it stays frozen.  PostgreSQL gets the same per transaction
    (:attr:`Repository.lock_idle_timeout`); MySQL has no such setting and SQLite no server:
    nothing is set there.
    """
    if engine.url.get_backend_name() not in ("mysql", "mariadb"):
        return
    statement = f"SET SESSION idle_transaction_timeout = {max(1, math.ceil(seconds))}"

    @event.listens_for(engine, "connect")
    def _idle_timeout(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(statement)
        except Exception as exc:  # noqa: BLE001 - MySQL: run without it
            logger.debug("beat: idle_transaction_timeout not available (%s): a leader "
                         "frozen inside a transaction keeps its lease until it resumes", exc)
        finally:
            cursor.close()


#: PostgreSQL SQLSTATEs of a transaction the server aborted because of another one:
#: serialization_failure, deadlock_detected.
_PG_RETRY = ("40001", "40P01")
#: MySQL/MariaDB error codes of the same: deadlock, "record has changed since last read"
#: (MariaDB's snapshot isolation).
_MYSQL_RETRY = (1213, 1020)
#: Waits for a lock that ran out: lock_not_available (PostgreSQL), lock wait timeout
#: (MySQL/MariaDB), "database is locked" (SQLite).
_PG_BUSY = ("55P03",)
_MYSQL_BUSY = (1205,)


def _driver_error(exc: BaseException) -> tuple[Any, Any]:
    orig = getattr(exc, "orig", None)
    if orig is None:
        return None, None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    code = orig.args[0] if getattr(orig, "args", None) else None
    return sqlstate, code


def conflict_kind(exc: BaseException) -> str | None:
    """``"retry"`` when the database aborted the transaction because of a concurrent one
    (running it again is the cure), ``"busy"`` when a lock wait ran out, else ``None``."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm.exc import StaleDataError

    if isinstance(exc, StaleDataError):
        return "retry"  # a row changed or vanished between our read and our write
    if not isinstance(exc, DBAPIError):
        return None
    sqlstate, code = _driver_error(exc)
    if sqlstate in _PG_RETRY or code in _MYSQL_RETRY:
        return "retry"
    if sqlstate in _PG_BUSY or code in _MYSQL_BUSY:
        return "busy"
    if "database is locked" in str(exc.orig):
        return "busy"
    return None
