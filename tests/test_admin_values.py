"""Values through BeatAdmin on real SQLite, PostgreSQL and MariaDB: refusals write nothing
and raise precise errors (never a raw driver error), Celery's values round-trip, names
behave alike on every database, and concurrent admins never see a raw database error."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from kombu import Exchange, Queue
from test_admin import snapshot

from celery_beatx import BeatAdmin, BeatxError, InvalidSchedule, TaskNotFound, every
from celery_beatx.store.repository import COPY_ROWS

UTC = timezone.utc
HUGE = "x" * 20_000_000  # 20 MB


def _doc(**task):
    item = {"name": "imp", "task": "t", "schedule": {"type": "interval", "seconds": 5}}
    item.update(task)
    return json.dumps({"format": "celery-beatx/1", "tasks": [item]})


@pytest.mark.parametrize("call, message", [
    (lambda a: a.add("x", "t", every(seconds=1), options={"headers": "x"}),
     "use the task's 'headers' field"),
    (lambda a: a.add("x", "t", every(seconds=1), options={"task_id": "same-every-time"}),
     "task_id"),
    (lambda a: a.add("x", "t", every(seconds=1), headers={"id": "x"}), "set by Celery"),
    (lambda a: a.add("x", "t", every(seconds=1), kwargs={1: "one"}), "not a string"),
    (lambda a: a.update("dup", expires=datetime(2026, 3, 1, 11, tzinfo=UTC)),
     "not in the future"),
    (lambda a: a.add("x", "t", every(seconds=0.01)), "minimum"),
    (lambda a: a.add("x", "t", every(seconds=1), catchup_limit=2**40), "catchup_limit"),
    (lambda a: a.add("x", "t", every(seconds=1), args=[HUGE]), "the limit is"),
    (lambda a: a.update("dup", kwargs={"blob": HUGE}), "the limit is"),
    (lambda a: a.add("x", "t", every(seconds=1), description="d" * 70_000), "description"),
    (lambda a: a.add("x", "t", every(seconds=1), source="s" * 17), "source"),
    (lambda a: a.add("x ", "t", every(seconds=1)), "whitespace"),
    (lambda a: a.import_state(_doc(enabeld=False)), "'enabeld'"),
    (lambda a: a.import_state(_doc(total_run_count=2**40)), "total_run_count"),
    (lambda a: a.import_state(_doc(catchup_limit=2**40)), "catchup_limit"),
    (lambda a: a.import_state(_doc(args=[HUGE])), "the limit is"),
    (lambda a: a.import_state(_doc(source="x" * 40)), "source"),
    (lambda a: a.import_state(_doc(last_run_at="0001-01-01T00:00:00+00:00")), "years"),
    (lambda a: a.import_state(json.dumps({"format": "celery-beatx/1", "tasks": [],
                                          "taks": []})), "'taks'"),
])
def test_refusal_is_invalid_schedule_and_writes_nothing(admin, call, message):
    admin.add("dup", "t", every(seconds=1))
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match=message):
        call(admin)
    assert snapshot(admin) == before


def test_import_refuses_an_unknown_key_naming_it(admin):
    doc = json.loads(_doc(enabeld=False))
    with pytest.raises(InvalidSchedule, match=r"tasks\[0\] \('imp'\): key 'enabeld'") as info:
        admin.import_state(doc)
    assert info.value.field == "enabeld"
    assert admin.list() == []
    # everything export_state writes is accepted
    admin.add("a", "t", every(seconds=5), enabled=False, tags=["x"])
    exported = admin.export_state()
    admin.remove("a")
    assert admin.import_state(exported) == 1
    assert admin.get("a").enabled is False


def test_celery_values_round_trip_through_the_admin_api(admin, clock):
    from celery_beatx.store.models import Task
    from celery_beatx.store.rows import checked_definition

    when = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    ident = uuid.uuid4()
    expires = datetime(2026, 3, 2, tzinfo=UTC)
    queue = Queue("reports", Exchange("work", type="topic"), routing_key="reports.daily")
    info = admin.add("typed", "proj.t", every(seconds=10), args=(when, Decimal("2.50")),
                     kwargs={"id": ident, "day": when.date(), "raw": b"\x00\xff"},
                     expires=expires, queue=queue)
    got = admin.get("typed")
    assert got == info
    assert got.args == [when, Decimal("2.50")]
    assert got.kwargs == {"id": ident, "day": when.date(), "raw": b"\x00\xff"}
    assert got.expires == expires and got.queue == "reports"
    assert got.options == {"exchange": "work", "exchange_type": "topic",
                           "routing_key": "reports.daily"}
    # what beat sends from: the row decoded
    with admin.repo.transaction(readonly=True) as session:
        row = session.scalars(sa.select(Task).where(Task.name == "typed")).one()
        fields, problem = checked_definition(row)
    assert problem is None
    assert fields["args"] == [when, Decimal("2.50")] and type(fields["args"][1]) is Decimal
    assert fields["kwargs"]["id"] == ident and isinstance(fields["kwargs"]["id"], uuid.UUID)
    assert fields["expires"] == expires
    # export -> import gives the same task back; the version snapshot holds the stored form
    doc = admin.export_state()
    assert json.loads(doc)["tasks"][0]["expires"] == {
        "__type__": "datetime", "__value__": "2026-03-02T00:00:00+00:00"}
    admin.remove("typed")
    admin.import_state(doc)
    again = admin.get("typed")
    assert (again.args, again.kwargs, again.expires, again.options) == \
        (got.args, got.kwargs, got.expires, got.options)
    # seconds again, then back to the absolute time through a rollback
    assert admin.update("typed", expires=30).expires == 30.0
    assert admin.rollback("typed", 1).expires == expires
    # a Queue given alone keeps the other options and replaces the routing
    admin.update("typed", options={"countdown": 1, "exchange": "old", "routing_key": "old"})
    after = admin.update("typed", queue=Queue("plain"))
    assert after.queue == "plain" and after.options == {"countdown": 1}


@pytest.mark.parametrize("copies", [1, COPY_ROWS // 4 + 1])  # statements; COPY on PostgreSQL
def test_what_add_many_returns_is_what_get_reads_back(admin, clock, copies):
    # add_many builds its TaskInfos from the validated input, not from the rows read
    # back: every kind of value must come out the same both ways, however it was written.
    when = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    specs = [
        {"name": "plain", "task": "t", "schedule": every(seconds=10)},
        {"name": "flat", "task": "t", "schedule": every(minutes=5), "args": (1, "a", None),
         "kwargs": {"region": "eu", "n": 3}, "priority": 5, "queue": "q", "group": "g",
         "tags": ["x", "y", "x"], "jitter": 1, "catchup": "all", "overlap": "skip",
         "description": "d", "enabled": False, "expires": 30},
        {"name": "typed", "task": "t", "schedule": every(hours=1),
         "args": [when, Decimal("1.5"), [1, 2]], "kwargs": {"id": uuid.UUID(int=7)},
         "expires": when, "headers": {"h": "v"}, "options": {"countdown": 2},
         "retry": {"max_retries": 2}, "depends_on": ["plain"],
         "calendar": {"weekdays": [0, 1, 2, 3, 4]}},
        {"name": "routed", "task": "t", "schedule": every(seconds=30),
         "queue": Queue("r", Exchange("e", type="direct"), routing_key="r.k")},
    ]
    specs += [dict(spec, name=f"{spec['name']}-{k}", depends_on=[])
              for k in range(1, copies) for spec in specs]
    infos = admin.add_many(specs)
    assert [i.name for i in infos] == [s["name"] for s in specs]
    stored = {info.name: info for info in admin.list()}
    assert len(stored) == len(specs)
    for info in infos:
        assert stored[info.name] == info, info.name
    assert admin.get("typed") == infos[2]
    assert infos[1].args == [1, "a", None] and infos[1].tags == ["x", "y"]
    assert infos[2].args == [when, Decimal("1.5"), [1, 2]] and infos[2].expires == when


def test_expires_in_the_past_is_refused_even_through_rollback(admin, clock):
    admin.add("e", "t", every(seconds=10), expires=clock.now + timedelta(hours=1))
    admin.update("e", expires=60)
    clock.advance(hours=2)
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match="expires .* not in the future"):
        admin.rollback("e", 1)
    assert snapshot(admin) == before


def test_seconds_are_stored_exactly_on_every_database(admin):
    # MariaDB's FLOAT is single precision: 0.123456789 came back as 0.123457, so an
    # unchanged beat_schedule entry looked changed at every start (a new version each time)
    info = admin.add("f", "t", every(seconds=10), jitter=0.123456789, expires=86400.123456)
    got = admin.get("f")
    assert (got.jitter, got.expires) == (0.123456789, 86400.123456) == (info.jitter,
                                                                      info.expires)


# -- names ---------------------------------------------------------------------------------


def test_names_are_exact_on_every_database(admin):
    admin.add("report", "t", every(seconds=5))
    admin.add("Report", "t", every(seconds=7))
    admin.add("résumé", "t", every(seconds=9))
    assert [t.name for t in admin.list()] == ["Report", "report", "résumé"]
    assert admin.get("report").schedule == every(seconds=5)
    assert admin.get("Report").schedule == every(seconds=7)
    for other in ("REPORT", "resume", "Résumé"):
        with pytest.raises(TaskNotFound):
            admin.get(other)
        with pytest.raises(TaskNotFound):
            admin.update(other, args=[1])
        with pytest.raises(TaskNotFound):
            admin.remove(other)
    admin.update("Report", args=[1])
    assert admin.get("report").args == [] and admin.get("Report").args == [1]
    admin.remove("report")
    assert [t.name for t in admin.list()] == ["Report", "résumé"]
    # whitespace around a name is refused everywhere, so "report " cannot shadow "report"
    for name in ("report ", " report", "report\t"):
        with pytest.raises(InvalidSchedule, match="whitespace"):
            admin.add(name, "t", every(seconds=5))
    # and a name is looked up as given: no padding, no trimming
    with pytest.raises(TaskNotFound):
        admin.get("Report ")


def test_group_names_are_exact_on_every_database(admin):
    admin.add("a", "t", every(seconds=5), group="reports")
    admin.add("b", "t", every(seconds=5), group="Reports")
    admin.add("c", "t", every(seconds=5), group="rapports")
    assert [t.name for t in admin.list(group="Reports")] == ["b"]
    assert admin.disable_group("Reports") == 1
    assert [t.enabled for t in admin.list()] == [True, False, True]
    assert admin.disable_group("REPORTS") == 0


# -- concurrent admins ---------------------------------------------------------------------


def test_concurrent_group_and_tag_changes_never_raise_raw_errors(db_url, clock):
    """Before: 418 of ~15,000 such calls raised a raw StaleDataError on PostgreSQL and
    MariaDB (a task removed between the group read and the update)."""
    setup = BeatAdmin(url=db_url, clock=clock)
    setup.add_many([{"name": f"t{i}", "task": "t", "schedule": every(seconds=10),
                     "group": f"g{i % 3}", "tags": [f"k{i % 2}"]} for i in range(24)])
    setup.engine.dispose()
    raw: list[BaseException] = []
    calls = [0]

    def worker(n: int) -> None:
        admin = BeatAdmin(url=db_url, clock=clock)
        try:
            for i in range(40):
                group, tag = f"g{(n + i) % 3}", f"k{(n + i) % 2}"
                try:
                    (admin.enable_group, admin.disable_group)[i % 2](group)
                    (admin.disable_tag, admin.enable_tag)[i % 2](tag)
                    admin.add(f"x{n}", "t", every(seconds=5), group=group, tags=[tag])
                    admin.remove(f"x{n}")
                    calls[0] += 4
                except BeatxError:
                    pass  # a precise error is allowed; a raw one is not
                except Exception as exc:  # noqa: BLE001
                    raw.append(exc)
        finally:
            admin.engine.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert raw == []
    assert calls[0] == 6 * 40 * 4


def _wait_for_a_lock_wait(engine: sa.Engine, timeout: float = 10.0) -> None:
    """Return once a transaction on this test's database waits for a lock."""
    import time

    if engine.dialect.name == "postgresql":
        query = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND datname = current_database()")
    else:
        query = ("SELECT count(*) FROM information_schema.innodb_trx t "
                 "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                 "WHERE t.trx_state = 'LOCK WAIT' AND p.db = DATABASE()")
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while conn.execute(sa.text(query)).scalar() == 0:
            assert time.monotonic() < deadline, "nobody waits for a lock"
            time.sleep(0.02)
            conn.rollback()


@pytest.mark.parametrize("migrated_db", ["postgresql", "mariadb"], indirect=True)
def test_an_admin_chosen_as_deadlock_victim_runs_again(db_url, clock):
    """Beat holds a task row and then wants the change-feed counter while an admin holds
    the counter and wants the row: the database aborts one of them, here the admin (the
    lighter transaction on MariaDB; the one whose deadlock check runs first on PostgreSQL).
    The call runs again and succeeds instead of raising the driver's deadlock error."""
    from celery_beatx.store.models import Counter, Task

    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("a", "t", every(seconds=10))
    engine = sa.create_engine(db_url)
    result: dict[str, object] = {}
    conn = engine.connect()
    tx = conn.begin()
    if engine.dialect.name == "postgresql":
        # this side checks for deadlocks late, so the admin's check finds the cycle
        conn.execute(sa.text("SET LOCAL deadlock_timeout = '60s'"))
    conn.execute(sa.update(Task).where(Task.name == "a").values(total_run_count=1))

    def change() -> None:
        try:
            result["info"] = admin.update("a", args=[2])
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    thread = threading.Thread(target=change)
    thread.start()
    _wait_for_a_lock_wait(engine)  # the admin holds the counter and waits for row "a"
    conn.execute(sa.select(Counter.value).with_for_update())  # closes the cycle
    tx.commit()
    conn.close()
    thread.join(timeout=60)
    engine.dispose()
    assert "error" not in result, result.get("error")
    assert admin.get("a").args == [2] and admin.get("a").total_run_count == 1
    admin.engine.dispose()


def test_large_batches_are_written_in_bounded_statements(admin):
    """60 tasks with two 250 KB arguments each: one INSERT of them all is larger than
    MariaDB's default max_allowed_packet (16 MiB), which dropped the connection."""
    big = "y" * (250 * 1024)
    specs = [{"name": f"t{i}", "task": "t", "schedule": every(seconds=10), "args": [big],
              "kwargs": {"b": big}} for i in range(60)]
    assert len(admin.add_many(specs)) == 60
    doc = json.loads(admin.export_state())
    admin.import_state(doc, mode="replace")
    admin.update("t1", args=[])
    doc["tasks"][1]["args"] = ["changed"]
    admin.import_state(doc)  # merge: 60 updates, 60 new versions
    assert admin.get("t1").args == ["changed"] and admin.get("t59").args == [big]


def test_export_writes_one_task_per_line(tmp_path):
    """An export lists one task per line (a diff of two exports names the changed tasks)
    and is one JSON document."""
    admin = BeatAdmin(url=f"sqlite:///{tmp_path}/one-per-line.db")
    assert json.loads(admin.export_state())["tasks"] == []
    for name in ("a", "b", "c"):
        admin.add(name, "proj.t", every(seconds=30), kwargs={"nested": {"x": [1, 2]}})
    doc = admin.export_state()
    lines = doc.splitlines()
    assert len(lines) == 5 and lines[-1] == "]}"
    assert [json.loads(line.rstrip(","))["name"] for line in lines[1:4]] == ["a", "b", "c"]
    assert [t["kwargs"] for t in json.loads(doc)["tasks"]] == [{"nested": {"x": [1, 2]}}] * 3
    admin.engine.dispose()
