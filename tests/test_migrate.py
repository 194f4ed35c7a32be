"""Schema migrations: fresh databases on every backend, concurrency, refusal when off."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from celery_beatx import SchemaOutOfDate, migrate
from celery_beatx.store.engine import make_engine
from celery_beatx.store.models import Base

BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_upgrade_creates_prefixed_tables_and_leaves_host_history_alone(empty_db):
    engine = make_engine(empty_db)
    with engine.begin() as conn:  # a host application's own Alembic history
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('hostapp42')"))
    assert migrate.current_revision(engine) is None
    assert migrate.upgrade(engine) == migrate.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert all(t.startswith("beatx_") for t in tables - {"alembic_version"})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() \
            == "hostapp42"
    assert migrate.is_current(engine)
    assert migrate.upgrade(engine) == migrate.head_revision()  # idempotent
    engine.dispose()


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_schema_matches_models(empty_db):
    """The shipped migrations produce exactly what the ORM models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(empty_db)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_object": lambda o, n, t, r, c: t != "table" or n.startswith("beatx_")
            and n != migrate.VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == []


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_auto_migrate_off_raises_on_empty_schema(empty_db):
    engine = make_engine(empty_db)
    with pytest.raises(SchemaOutOfDate, match="beatx migrate"):
        migrate.ensure_schema(engine, auto_migrate=False)
    assert migrate.current_revision(engine) is None  # nothing written
    from celery_beatx import BeatAdmin

    with pytest.raises(SchemaOutOfDate):
        BeatAdmin(engine=engine, auto_migrate=False).list()
    engine.dispose()


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_concurrent_starts_migrate_exactly_once(empty_db):
    script = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from celery_beatx import migrate
        from celery_beatx.store.engine import make_engine
        print("REV", migrate.upgrade(make_engine({empty_db!r})))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    head = migrate.head_revision()
    assert all(f"REV {head}" in out for out in outputs), outputs
    # exactly one process ran the upgrade (every revision of it); the others waited
    assert sum("Running upgrade" in out for out in outputs) == 1, outputs


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_current_version_lives_on_the_row_and_survives_a_downgrade(empty_db):
    """0006 keeps only superseded versions as snapshots; going back to 0005 writes the
    current version's snapshot again, so an older release still finds every version."""
    from alembic import command

    from celery_beatx import BeatAdmin, every

    engine = make_engine(empty_db)
    migrate.upgrade(engine)
    admin = BeatAdmin(url=empty_db)
    admin.add("one", "t.one", every(seconds=10))
    admin.add("two", "t.two", every(seconds=10), depends_on=["one"])
    admin.update("two", schedule=every(seconds=20))
    with engine.connect() as conn:
        stored = sorted(conn.execute(sa.text(
            "SELECT task_name, version FROM beatx_task_versions")).all())
    assert stored == [("two", 1)]  # version 1 of "one" and version 2 of "two" are the rows
    assert [v.version for v in admin.versions("two")] == [1, 2]
    assert admin.versions("two")[1].definition["schedule"]["seconds"] == 20
    admin.engine.dispose()
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrate.alembic_config(conn), "0005")
    with engine.connect() as conn:
        rows = {(name, version): definition for name, version, definition in conn.execute(
            sa.text("SELECT task_name, version, definition FROM beatx_task_versions"))}
    assert sorted(rows) == [("one", 1), ("two", 1), ("two", 2)]
    assert "20" in str(rows[("two", 2)]) and "20" not in str(rows[("two", 1)])
    # SQLite rebuilds the table to drop the columns: its dependency edges survive that
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT task_name, depends_on FROM beatx_dependencies")).all() == [("two", "one")]
    migrate.upgrade(engine)
    assert admin.get("two").depends_on == ["one"]
    admin = BeatAdmin(url=empty_db)
    assert [v.version for v in admin.versions("two")] == [1, 2]
    admin.engine.dispose()
    engine.dispose()


#: Two tasks as a 0006 release wrote them: empty values as JSON text and "".
OLD_ROWS = """
INSERT INTO beatx_tasks (name, task, schedule, args, kwargs, headers, options, enabled,
    group_name, tags, source, description, depends_on, retry, alerts, calendar, jitter,
    catchup, catchup_limit, overlap, version, total_run_count, revision, created_at,
    updated_at)
VALUES
  ('plain', 't', '{"type": "interval", "seconds": 10.0}', '[]', '{}', '{}', '{}', TRUE,
   NULL, '[]', 'api', '', '[]', 'null', 'null', 'null', 0, 'once', 100, 'allow', 1, 0, 1,
   '2026-03-01 12:00:00', '2026-03-01 12:00:00'),
  ('full', 't', '{"type": "interval", "seconds": 10.0}', '[1]', '{"a": 1}', '{"h": "v"}',
   '{"countdown": 2}', TRUE, 'g', '["x"]', 'api', 'about', '["plain"]',
   '{"max_retries": 2}', 'null', 'null', 0, 'once', 100, 'allow', 1, 0, 2,
   '2026-03-01 12:00:00', '2026-03-01 12:00:00')
"""
EMPTY_COLUMNS = ("args", "kwargs", "headers", "options", "tags", "depends_on", "description",
                 "retry", "alerts", "calendar")


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_0007_stores_empty_values_as_null_and_reads_them_back(empty_db):
    """Rows written before 0007 keep their meaning after it (and after going back): their
    empty values become NULL, read as the empty value; nothing else changes."""
    from alembic import command

    from celery_beatx import BeatAdmin

    engine = make_engine(empty_db)
    migrate.upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(sa.text(OLD_ROWS))
        conn.execute(sa.text("INSERT INTO beatx_dependencies (task_name, depends_on) "
                             "VALUES ('full', 'plain')"))
    admin = BeatAdmin(url=empty_db, auto_migrate=False)
    with pytest.raises(SchemaOutOfDate):
        admin.list()
    migrate.upgrade(engine)
    nulls = ", ".join(f"{c} IS NULL" for c in EMPTY_COLUMNS)
    with engine.connect() as conn:
        stored = {name: row for name, *row in conn.execute(sa.text(
            f"SELECT name, {nulls} FROM beatx_tasks"))}
        edges = conn.execute(sa.text(
            "SELECT task_name, depends_on FROM beatx_dependencies")).all()
    assert [bool(v) for v in stored["plain"]] == [True] * len(EMPTY_COLUMNS)
    assert [bool(v) for v in stored["full"]] == [False] * 7 + [False, True, True]
    assert edges == [("full", "plain")]
    admin = BeatAdmin(url=empty_db)
    plain, full = admin.get("plain"), admin.get("full")
    assert (plain.args, plain.kwargs, plain.headers, plain.options, plain.tags,
            plain.depends_on, plain.description, plain.retry, plain.alerts,
            plain.calendar) == ([], {}, {}, {}, [], [], "", None, None, None)
    assert plain.invalid_reason is None and full.invalid_reason is None
    assert (full.args, full.kwargs, full.headers, full.options, full.tags, full.depends_on,
            full.description, full.retry["max_retries"], full.group) == (
        [1], {"a": 1}, {"h": "v"}, {"countdown": 2}, ["x"], ["plain"], "about", 2, "g")
    assert [v.version for v in admin.versions("plain")] == [1]  # not a definition change
    # new tasks store their empty values as NULL too
    admin.add("new", "t", plain.schedule)
    admin.update("full", args=[], tags=[])
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {nulls} FROM beatx_tasks WHERE name = 'new'")).one()
        assert all(row)
        assert conn.execute(sa.text(
            "SELECT args IS NULL, tags IS NULL FROM beatx_tasks WHERE name = 'full'")).one() \
            == (1, 1)
    assert admin.get("full").args == [] and admin.versions("full")[-1].version == 2
    admin.engine.dispose()
    # back to 0006: the empty values are written out again, so an older release reads them
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrate.alembic_config(conn), "0006")
    with engine.connect() as conn:
        rows = {name: (args.strip(), tags.strip(), description)  # CHAR pads on PostgreSQL
                for name, args, tags, description in
                conn.execute(sa.text("SELECT name, CAST(args AS CHAR(20)), "
                                     "CAST(tags AS CHAR(20)), description FROM beatx_tasks"))}
        assert rows["plain"] == ("[]", "[]", "") and rows["new"] == ("[]", "[]", "")
        assert conn.execute(sa.text(
            "SELECT task_name, depends_on FROM beatx_dependencies")).all() == [("full", "plain")]
    engine.dispose()


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_0008_the_name_is_the_key_both_ways(empty_db):
    """Without the surrogate id a name stays unique and its dependency edges keep
    cascading; going back numbers the tasks again."""
    from alembic import command

    from celery_beatx import BeatAdmin, every

    engine = make_engine(empty_db)
    migrate.upgrade(engine)
    admin = BeatAdmin(url=empty_db)
    admin.add("up", "t", every(seconds=10))
    admin.add("down", "t", every(seconds=10), depends_on=["up"])
    admin.add("other", "t", every(seconds=10), depends_on=["up"])
    admin.engine.dispose()
    columns = {c["name"] for c in sa.inspect(engine).get_columns("beatx_tasks")}
    assert "id" not in columns
    assert sa.inspect(engine).get_pk_constraint("beatx_tasks")["constrained_columns"] == ["name"]
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrate.alembic_config(conn), "0007")
    with engine.connect() as conn:
        ids = [i for (i,) in conn.execute(sa.text("SELECT id FROM beatx_tasks"))]
        edges = conn.execute(sa.text("SELECT task_name, depends_on FROM beatx_dependencies "
                                     "ORDER BY task_name")).all()
    assert len(set(ids)) == 3 and None not in ids
    assert edges == [("down", "up"), ("other", "up")]
    migrate.upgrade(engine)
    admin = BeatAdmin(url=empty_db)
    with pytest.raises(Exception, match="exists"):
        admin.add("up", "t", every(seconds=10))
    admin.remove("other")
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT task_name, depends_on FROM beatx_dependencies")).all() == [("down", "up")]
    with engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            conn.execute(sa.text("INSERT INTO beatx_tasks (name, task, schedule, enabled, "
                                 "source, jitter, catchup, catchup_limit, overlap, version, "
                                 "total_run_count, revision, created_at, updated_at) "
                                 "SELECT name, task, schedule, enabled, source, jitter, catchup, "
                                 "catchup_limit, overlap, version, total_run_count, revision, "
                                 "created_at, updated_at FROM beatx_tasks WHERE name = 'up'"))
    admin.engine.dispose()
    engine.dispose()


#: A crontab task and a composite one as an 0008 release wrote them (every crontab field,
#: version 1's time and comment on the row), and one at version 2.
FULL_ROWS = """
INSERT INTO beatx_tasks (name, task, schedule, enabled, source, jitter, catchup,
    catchup_limit, overlap, version, version_at, version_comment, total_run_count, revision,
    created_at, updated_at)
VALUES
  ('daily', 't', '{"type": "crontab", "minute": "30", "hour": "4", "day_of_week": "*",
    "day_of_month": "*", "month_of_year": "*"}', TRUE, 'api', 0, 'once', 100, 'allow', 1,
   '2026-03-01 12:00:00', 'created', 0, 1, '2026-03-01 12:00:00', '2026-03-01 12:00:00'),
  ('both', 't', '{"type": "any_of", "schedules": [{"type": "interval", "seconds": 5.0},
    {"type": "crontab", "minute": "*", "hour": "*", "day_of_week": "1",
     "day_of_month": "*", "month_of_year": "*"}]}', TRUE, 'api', 0, 'once', 100, 'allow', 1,
   '2026-03-01 12:00:00', 'created', 0, 1, '2026-03-01 12:00:00', '2026-03-01 12:00:00'),
  ('edited', 't', '{"type": "interval", "seconds": 10.0}', TRUE, 'api', 0, 'once', 100,
   'allow', 2, '2026-03-02 12:00:00', 'slower', 0, 2, '2026-03-01 12:00:00',
   '2026-03-02 12:00:00')
"""


@pytest.mark.parametrize("empty_db", BACKENDS, indirect=True)
def test_0009_compacts_rows_going_up_and_writes_them_out_going_down(empty_db):
    """Rows an 0008 release wrote become compact (no '*' crontab fields, no copy of version
    1's stamp) and read exactly as before; going back writes them out in full again."""
    import json
    from datetime import datetime, timezone

    from alembic import command
    UTC = timezone.utc

    from celery_beatx import BeatAdmin

    engine = make_engine(empty_db)
    migrate.upgrade(engine, "0008")
    columns = ("name, task, schedule, enabled, source, jitter, catchup, catchup_limit, "
               "overlap, version, version_at, version_comment, total_run_count, revision, "
               "created_at, updated_at")
    values = ", ".join(f":{c.strip()}" for c in columns.split(","))
    many = [{"name": f"many{i:05d}", "task": "t", "schedule": json.dumps(
                {"type": "crontab", "minute": str(i % 60), "hour": "*", "day_of_week": "*",
                 "day_of_month": "*", "month_of_year": "*"}),
             "enabled": True, "source": "api", "jitter": 0, "catchup": "once",
             "catchup_limit": 100, "overlap": "allow", "version": 1,
             "version_at": "2026-03-05 12:00:00", "version_comment": "imported",
             "total_run_count": 0, "revision": 10 + i, "created_at": "2026-03-01 12:00:00",
             "updated_at": "2026-03-01 12:00:00"} for i in range(2_100)]  # > one page
    with engine.begin() as conn:
        conn.execute(sa.text(FULL_ROWS))
        conn.execute(sa.text(f"INSERT INTO beatx_tasks ({columns}) VALUES ({values})"), many)
        if engine.dialect.name == "sqlite":  # the only one that stores broken JSON
            conn.execute(sa.text(f"INSERT INTO beatx_tasks ({columns}) VALUES ({values})"),
                         dict(many[0], name="broken", schedule='{"type": "crontab", '))

    def stored() -> dict:
        def decoded(schedule):
            try:
                return json.loads(schedule) if isinstance(schedule, str) else schedule
            except ValueError:
                return schedule

        with engine.connect() as conn:
            return {name: (decoded(schedule), at is not None, comment)
                    for name, schedule, at, comment in conn.execute(sa.text(
                        "SELECT name, schedule, version_at, version_comment FROM beatx_tasks"))}

    before = stored()
    migrate.upgrade(engine)
    after = stored()
    assert after["daily"] == ({"type": "crontab", "minute": "30", "hour": "4"}, False, None)
    assert after["both"][0]["schedules"][1] == {"type": "crontab", "day_of_week": "1"}
    assert after["both"][1:] == (False, None)
    assert after["edited"] == before["edited"]  # version 2 keeps its own stamp
    # every page compacted; a version 1 that is not "created" keeps its stamp
    assert after["many02099"] == ({"type": "crontab", "minute": "59"}, True, "imported")
    assert all(len(after[f"many{i:05d}"][0]) == 2 for i in range(2_100))
    assert after.get("broken") == before.get("broken")  # left for beat to mark invalid
    admin = BeatAdmin(url=empty_db)
    daily = admin.get("daily")
    read = daily.schedule.to_dict()
    assert {k: read[k] for k in before["daily"][0]} == before["daily"][0]
    read = admin.get("both").schedule.to_dict()["schedules"][1]
    assert {k: read[k] for k in before["both"][0]["schedules"][1]} == \
        before["both"][0]["schedules"][1]
    (v1,) = admin.versions("daily")
    assert (v1.comment, v1.created_at) == ("created", datetime(2026, 3, 1, 12, tzinfo=UTC))
    assert admin.versions("edited")[-1].comment == "slower"
    admin.engine.dispose()
    with engine.connect() as conn, conn.begin():
        command.downgrade(migrate.alembic_config(conn), "0008")
    assert stored() == before
    engine.dispose()
