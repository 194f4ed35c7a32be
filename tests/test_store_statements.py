"""The send path's statements, on each real database: what they write, what they decide,
and (PostgreSQL) which plan a prepared statement keeps after its table has grown."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from celery_beatx import BeatAdmin, every
from celery_beatx.store import engine as engine_module
from celery_beatx.store.engine import make_engine
from celery_beatx.store.models import Run, Task
from celery_beatx.store.repository import Repository


@pytest.fixture
def admin(db_url, clock):  # type: ignore[no-untyped-def]
    adm = BeatAdmin(url=db_url, clock=clock)
    yield adm
    adm.engine.dispose()


LEASE = "leader-like"  # fence works on any lease; beat's own name is reserved


def task_state(admin: BeatAdmin, name: str):  # type: ignore[no-untyped-def]
    with admin.repo.transaction(readonly=True) as session:
        return session.execute(sa.select(Task.last_run_at, Task.total_run_count,
                                         Task.next_run_at, Task.revision)
                               .where(Task.name == name)).one()


def test_save_states_counts_runs_and_leaves_a_newer_definition_s_next_run(admin, clock):
    for name in ("ran", "waited", "changed"):
        admin.add(name, "proj.t", every(minutes=5))
    before = {name: task_state(admin, name) for name in ("ran", "waited", "changed")}
    admin.update("changed", args=[1])  # the admin's change comes with its own next run
    changed = task_state(admin, "changed")
    assert changed.revision != before["changed"].revision
    ran_at = clock.advance(minutes=5)
    following = ran_at + timedelta(minutes=5)
    with admin.repo.transaction() as session:
        admin.repo.save_states(session, [
            ("waited", before["waited"].revision, None, 0, following),
            ("ran", before["ran"].revision, ran_at, 2, following),
            # decided from the definition before the change: its runs count, its next
            # run time is the new definition's
            ("changed", before["changed"].revision, ran_at, 1, following),
        ])
    ran, waited, after = (task_state(admin, n) for n in ("ran", "waited", "changed"))
    assert (ran.last_run_at, ran.total_run_count, ran.next_run_at) == (ran_at, 2, following)
    assert (waited.last_run_at, waited.total_run_count, waited.next_run_at) == (
        before["waited"].last_run_at, 0, following)
    assert (after.last_run_at, after.total_run_count, after.next_run_at) == (
        ran_at, 1, changed.next_run_at)
    assert after.next_run_at != following
    # nothing else moved: beat's progress is not a definition change
    assert [ran.revision, waited.revision] == [before["ran"].revision,
                                               before["waited"].revision]


def test_the_fence_passes_only_the_holder_with_its_token_before_expiry(admin):
    repo = admin.repo
    assert admin.try_acquire_lock(LEASE, ttl=30, owner="a")
    with repo.transaction() as session:
        assert repo.fence(session, LEASE, "a", 1) is True
        assert repo.fence(session, LEASE, "b", 1) is False
        assert repo.fence(session, LEASE, "a", 2) is False
        assert repo.fence(session, "no such lease", "a", 1) is False
    admin.release_lock(LEASE, owner="a")
    assert admin.try_acquire_lock(LEASE, ttl=0.3, owner="a")  # token 2
    with repo.transaction() as session:
        assert repo.fence(session, LEASE, "a", 2) is True
    time.sleep(0.6)  # leases are timed by the database's clock
    with repo.transaction() as session:
        assert repo.fence(session, LEASE, "a", 2) is False


def test_the_fence_sets_the_idle_timeout_of_its_transaction_on_postgresql(admin, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's per-transaction idle timeout")
    repo = admin.repo
    repo.lock_idle_timeout = 2.5
    assert admin.try_acquire_lock(LEASE, ttl=30, owner="a")
    with repo.transaction() as session:
        assert repo.fence(session, LEASE, "a", 1)
        setting = session.execute(sa.text("SHOW idle_in_transaction_session_timeout"))
        assert setting.scalar_one() == "2500ms"
    with repo.transaction() as session:  # for that transaction only
        setting = session.execute(sa.text("SHOW idle_in_transaction_session_timeout"))
        assert setting.scalar_one() == "0"


# -- a server that closed a pooled connection --------------------------------------------------

def kill_connection(db_url: str, backend_id: int) -> None:
    killer = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
    with killer.connect() as conn:
        if db_url.startswith("postgresql"):
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend_id})
        else:
            conn.execute(sa.text(f"KILL {int(backend_id)}"))
    killer.dispose()


def server_side_id(engine: sa.Engine) -> int:
    function = "pg_backend_pid()" if engine.dialect.name == "postgresql" else \
        "CONNECTION_ID()"
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT {function}")).scalar_one())


@pytest.mark.parametrize("idle_for, survives", [(0.0, True), (3600.0, False)])
def test_a_pooled_connection_the_server_closed_is_replaced_after_it_sat_idle(
        db_url, monkeypatch, idle_for, survives):
    """A connection unused for longer than ``PING_AFTER_IDLE`` is pinged when it is checked
    out, and replaced when the server has closed it; one used more recently is not pinged
    (the ``False`` case: with a threshold of an hour the dead connection is handed out)."""
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has no server to close a connection")
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", idle_for)
    engine = make_engine(db_url, {"pool_size": 1, "max_overflow": 0})
    try:
        first = server_side_id(engine)
        kill_connection(db_url, first)
        time.sleep(0.2)
        if survives:
            assert server_side_id(engine) != first  # a new connection, no error
        else:
            with pytest.raises(sa.exc.DBAPIError):
                server_side_id(engine)
            assert server_side_id(engine) != first  # SQLAlchemy dropped the dead one
    finally:
        engine.dispose()


# -- PostgreSQL: plans that stay right while the runs table grows ------------------------------

def generic_plan(engine: sa.Engine, call) -> str:  # type: ignore[no-untyped-def]
    """The generic plan PostgreSQL would keep for the statement ``call(session)`` runs
    (prepared by hand with the same text, on the same tables)."""
    import re

    from psycopg import sql

    seen: list[tuple[str, dict]] = []

    def capture(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        seen.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        with Repository(engine).transaction(readonly=True) as session:
            call(session)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    [(statement, params)] = [(s, p) for s, p in seen if "beatx_runs" in s]
    if isinstance(params, dict):  # named parameters
        names = re.findall(r"%\((\w+)\)s", statement)
        numbered = statement
        for number, name in enumerate(names, 1):
            numbered = numbered.replace(f"%({name})s", f"${number}", 1)
        given = [params[n] for n in names]
    else:  # positional: %s, or %b (binary)
        numbered, given = statement, list(params)
        for number in range(1, len(given) + 1):
            numbered = re.sub(r"%[sb]", f"${number}", numbered, count=1)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        values = ", ".join(sql.Literal(value).as_string(raw) for value in given)
        conn.execute(sa.text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(f"PREPARE beatx_probe AS {numbered}")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            f"EXPLAIN EXECUTE beatx_probe({values})"))
        conn.exec_driver_sql("DEALLOCATE beatx_probe")
        conn.rollback()
    return plan


def test_the_run_status_read_probes_the_index_even_with_a_plan_made_on_an_empty_table(
        db_url, admin):
    """psycopg prepares the statements beat repeats, and PostgreSQL then keeps a generic
    plan.  Made while ``beatx_runs`` was nearly empty, an ``IN`` list's generic plan is a
    scan of the whole table (the read took 400-700 ms once a burst had added tens of
    thousands of runs); the read beat uses probes the ``task_id`` index once per id
    whatever the table held when the plan was made."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's plan cache")
    ids = ["a", "b", "c"]
    theirs = generic_plan(admin.engine, lambda session: session.execute(
        sa.select(Run.task_id, Run.status).where(Run.task_id.in_(ids))).all())
    assert "Seq Scan on beatx_runs" in theirs  # what the test guards against
    ours = generic_plan(admin.engine, lambda session: admin.repo.run_statuses(session, ids))
    assert "Seq Scan on beatx_runs" not in ours, ours
    assert "Index Scan using uq_beatx_runs_task_id on beatx_runs" in ours, ours


def test_run_statuses_reads_every_existing_run_and_only_those(admin, clock):
    now = clock()
    rows = [{"task_name": "t", "task_id": f"id-{i}", "scheduled_at": now, "status": status,
             "attempt": 0, "kind": "scheduled", "created_at": now, "duplicates": 0}
            for i, status in enumerate(["pending", "sent", "succeeded"] * 400)]
    with admin.repo.transaction() as session:
        admin.repo.add_runs(session, rows)
    wanted = [f"id-{i}" for i in range(0, 1300, 2)]  # more than one chunk, some missing
    with admin.repo.transaction(readonly=True) as session:
        found = Repository(admin.engine).run_statuses(session, wanted)
    assert found == {r["task_id"]: r["status"] for r in rows if r["task_id"] in wanted}


@pytest.mark.parametrize("count", [2, 3, 999, 1000])  # arrays / COPY on PostgreSQL
def test_run_rows_are_stored_as_given_however_many_there_are(admin, clock, count):
    """``add_runs`` writes a batch in one statement of arrays on PostgreSQL (``COPY`` from
    1,000 rows): every value comes back as it was written, ``None`` (a column that is
    ``NULL`` in every row, too), text that needs quoting in an array, and times to the
    microsecond; then ``mark_runs`` moves only the pending ones among the ids it is given."""
    now = clock()
    odd = ['quote"d', "back\\slash", "com,ma", "{brace}", "NULL", "", "sp ace", "ü"]
    rows = [{"task_name": odd[i % len(odd)], "task_id": f"id-{i}",
             "scheduled_at": now + timedelta(microseconds=i), "attempt": i % 3,
             "status": "pending" if i % 2 else "succeeded", "kind": "scheduled",
             "token": None if i % 4 else 2**40 + i, "reason": None, "instance_id": None,
             "created_at": now} for i in range(count)]
    with admin.repo.transaction() as session:
        admin.repo.add_runs(session, rows)
    columns = [getattr(Run, key) for key in rows[0]]
    with admin.repo.transaction(readonly=True) as session:
        stored = [dict(zip(rows[0], r)) for r in session.execute(
            sa.select(*columns).order_by(Run.id))]
    assert stored == rows
    sent_at = now + timedelta(seconds=1, microseconds=7)
    with admin.repo.transaction() as session:
        admin.repo.mark_runs(session, [r["task_id"] for r in rows] + ["missing"],
                             status="sent", at=sent_at)
    with admin.repo.transaction(readonly=True) as session:
        marked = dict(session.execute(sa.select(Run.task_id, Run.status)).all())
        times = set(session.scalars(sa.select(Run.sent_at).where(Run.status == "sent")))
    assert marked == {r["task_id"]: "sent" if r["status"] == "pending" else r["status"]
                      for r in rows}
    assert times == {sent_at}


def test_a_run_value_too_long_for_its_column_is_refused_in_a_batch_too(admin, clock, db_url):
    # The batch's arrays are cast to text, not to varchar(n): a cast would cut the value.
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce a column's length")
    now = clock()
    rows = [{"task_name": "t", "task_id": f"id-{i}" + "x" * (70 * i), "scheduled_at": now,
             "attempt": 0, "status": "pending", "kind": "scheduled", "token": None,
             "reason": None, "instance_id": None, "created_at": now} for i in range(2)]
    with pytest.raises(sa.exc.DBAPIError):
        with admin.repo.transaction() as session:
            admin.repo.add_runs(session, rows)
    with admin.repo.transaction(readonly=True) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Run)).scalar() == 0
