"""BeatAdmin against real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from celery_beatx import (
    DependencyCycle,
    InvalidSchedule,
    TaskExists,
    TaskNotFound,
    VersionNotFound,
    cron,
    crontab,
    every,
)

UTC = timezone.utc


def snapshot(admin) -> list[tuple]:
    """Every row of every beatx table, to prove a failed call wrote nothing."""
    from celery_beatx.store.models import Base

    out = []
    with admin.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            out.append((table.name, sorted(map(repr, rows))))
    return out


def test_add_get_and_state(admin, clock):
    info = admin.add("report", "proj.tasks.report", every(seconds=30), args=[1, 2],
                     kwargs={"x": 1}, queue="reports", priority=5, expires=60,
                     headers={"h": "v"}, group="g1", tags=["a", "b"], description="d")
    assert info.version == 1 and info.enabled and info.source == "api"
    assert info.next_run_at == clock.now + timedelta(seconds=30)
    got = admin.get("report")
    assert got == info
    assert got.schedule == every(seconds=30)
    assert (got.args, got.kwargs, got.queue, got.priority, got.expires) == \
        ([1, 2], {"x": 1}, "reports", 5, 60.0)
    assert got.last_run_at is None and got.total_run_count == 0


def test_list_filters(admin):
    admin.add("a", "t", every(seconds=10), group="g", tags=["x"])
    admin.add("b", "t", every(seconds=10), group="g", tags=["y"], enabled=False)
    admin.add("c", "t", crontab(minute="0"), tags=["x", "y"])
    assert [t.name for t in admin.list()] == ["a", "b", "c"]
    assert [t.name for t in admin.list(group="g")] == ["a", "b"]
    assert [t.name for t in admin.list(tag="y")] == ["b", "c"]
    assert [t.name for t in admin.list(enabled=False)] == ["b"]
    assert [t.name for t in admin.list(group="g", enabled=True, tag="x")] == ["a"]


def test_update_makes_versions_and_rollback(admin, clock):
    admin.add("job", "t", every(minutes=1))
    clock.advance(seconds=5)
    info = admin.update("job", schedule=cron("*/5 * * * *"), args=[3])
    assert info.version == 2
    assert info.next_run_at == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    # no-op update: no new version
    assert admin.update("job", args=[3]).version == 2
    versions = admin.versions("job")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].definition["schedule"] == every(minutes=1).to_dict()
    back = admin.rollback("job", 1)
    assert back.version == 3 and back.schedule == every(minutes=1) and back.args == []
    assert [v.version for v in admin.versions("job")] == [1, 2, 3]
    with pytest.raises(VersionNotFound):
        admin.rollback("job", 9)


def test_enable_disable_and_groups(admin):
    admin.add("a", "t", every(seconds=5), group="g", tags=["x"])
    admin.add("b", "t", every(seconds=5), group="g")
    assert admin.disable("a").enabled is False
    assert admin.enable("a").enabled is True
    assert admin.disable_group("g") == 2
    assert not any(t.enabled for t in admin.list())
    assert admin.enable_tag("x") == 1
    assert [t.name for t in admin.list(enabled=True)] == ["a"]


def test_remove_and_remove_many(admin):
    admin.add_many([{"name": n, "task": "t", "schedule": every(seconds=1)} for n in "abc"])
    admin.remove("a")
    with pytest.raises(TaskNotFound):
        admin.get("a")
    before = snapshot(admin)
    with pytest.raises(TaskNotFound):
        admin.remove_many(["b", "zzz"])
    assert snapshot(admin) == before  # all-or-nothing
    assert admin.remove_many(["b", "c"]) == 2
    assert admin.list() == []
    # a removed name can be used again
    assert admin.add("a", "t", every(seconds=1)).version == 1


def test_next_runs(admin, clock):
    admin.add("cr", "t", crontab(minute="0", hour="*/6"))
    runs = admin.next_runs("cr", 3)
    assert runs == [datetime(2026, 3, 1, 18, tzinfo=UTC), datetime(2026, 3, 2, 0, tzinfo=UTC),
                    datetime(2026, 3, 2, 6, tzinfo=UTC)]
    admin.add("iv", "t", every(minutes=10))
    assert admin.next_runs("iv", 2) == [clock.now + timedelta(minutes=10),
                                        clock.now + timedelta(minutes=20)]


@pytest.mark.parametrize("call, error", [
    (lambda a: a.add("x", "t", crontab(minute="61")), InvalidSchedule),
    (lambda a: a.add("x", "t", crontab(day_of_week="8")), InvalidSchedule),
    (lambda a: a.add("x", "t", cron("0 9 * *")), InvalidSchedule),
    (lambda a: a.add("x", "t", crontab(timezone="Mars/Olympus")), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=0)), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=-5)), InvalidSchedule),
    (lambda a: a.add("x", "t", {"type": "interval", "seconds": -1}), InvalidSchedule),
    (lambda a: a.add("x", "t", {"type": "nope"}), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), priority=300), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), catchup="sometimes"), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), kwargs={"o": object()}), InvalidSchedule),
    (lambda a: a.add("", "t", every(seconds=1)), InvalidSchedule),
    (lambda a: a.add("dup", "t", every(seconds=1)), TaskExists),
    (lambda a: a.update("missing", args=[1]), TaskNotFound),
    (lambda a: a.update("dup", schedule=crontab(hour="24")), InvalidSchedule),
    (lambda a: a.update("dup", bogus=1), InvalidSchedule),
    (lambda a: a.remove("missing"), TaskNotFound),
    (lambda a: a.get("missing"), TaskNotFound),
    (lambda a: a.next_runs("dup", n=-1), InvalidSchedule),
    (lambda a: a.add_many([{"name": "n1", "task": "t", "schedule": every(seconds=1)},
                           {"name": "n2", "task": "t", "schedule": every(seconds=-1)}]),
     InvalidSchedule),
    (lambda a: a.add_many([{"name": "n1", "task": "t", "schedule": every(seconds=1)},
                           {"name": "dup", "task": "t", "schedule": every(seconds=1)}]),
     TaskExists),
    (lambda a: a.add("x", "t", every(seconds=1), depends_on=["ghost"]), TaskNotFound),
    (lambda a: a.add("x", "t", every(seconds=1), jitter=float("nan")), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), expires=float("inf")), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), expires=1e12), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), headers={"h": float("nan")}),
     InvalidSchedule),
    (lambda a: a.add("x\x00y", "t", every(seconds=1)), InvalidSchedule),
    (lambda a: a.add("x", "t", every(seconds=1), args="abc"), InvalidSchedule),
])
def test_bad_input_writes_nothing(admin, call, error):
    admin.add("dup", "t", every(seconds=1))
    before = snapshot(admin)
    with pytest.raises(error):
        call(admin)
    assert snapshot(admin) == before


def test_error_messages_name_field_and_value(admin):
    with pytest.raises(InvalidSchedule, match="day_of_week '8'.*0-6"):
        admin.add("x", "t", crontab(day_of_week="8"))
    with pytest.raises(InvalidSchedule, match="Mars/Olympus"):
        admin.add("x", "t", cron("* * * * *", timezone="Mars/Olympus"))


def test_naive_datetime_is_refused(admin):
    admin.add("x", "t", every(seconds=1))
    with pytest.raises(InvalidSchedule, match="naive"):
        admin.next_runs("x", 2, now=datetime(2026, 1, 1))  # noqa: DTZ001
    doc = json.loads(admin.export_state())
    doc["tasks"][0]["last_run_at"] = "2026-01-01T00:00:00"
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match="naive"):
        admin.import_state(json.dumps(doc))
    assert snapshot(admin) == before


def test_dependency_cycle_refused(admin):
    admin.add("a", "t", every(seconds=1))
    admin.add("b", "t", every(seconds=1), depends_on=["a"])
    admin.add("c", "t", every(seconds=1), depends_on=["b"])
    before = snapshot(admin)
    with pytest.raises(DependencyCycle, match="a -> c -> b -> a"):
        admin.update("a", depends_on=["c"])
    assert snapshot(admin) == before


def test_export_import_roundtrip(admin, clock, db_url):
    admin.add("a", "proj.a", every(seconds=15), args=[1], tags=["t"])
    admin.add("b", "proj.b", crontab(minute="*/5", timezone="Europe/Paris"), enabled=False)
    doc = admin.export_state()
    parsed = json.loads(doc)
    assert parsed["format"] == "celery-beatx/1"
    assert {t["name"] for t in parsed["tasks"]} == {"a", "b"}
    assert parsed["tasks"][0]["schedule"]["type"] == "interval"
    admin.remove_many(["a", "b"])
    assert admin.import_state(doc) == 2
    a, b = admin.get("a"), admin.get("b")
    assert a.schedule == every(seconds=15) and a.args == [1] and a.tags == ["t"]
    assert b.enabled is False and b.schedule == crontab(minute="*/5", timezone="Europe/Paris")
    # replace removes what the document does not name
    admin.add("c", "proj.c", every(seconds=1))
    admin.import_state(doc, mode="replace")
    assert [t.name for t in admin.list()] == ["a", "b"]


def test_export_import_carries_the_pause(admin):
    admin.add("p", "proj.p", every(seconds=15))
    admin.add("q", "proj.q", every(seconds=15))
    paused = admin.pause("p", "maintenance window")
    doc = json.loads(admin.export_state())
    exported = {t["name"]: t for t in doc["tasks"]}
    assert exported["p"]["paused_reason"] == "maintenance window"
    assert exported["p"]["paused_by"] == paused.paused_by and exported["p"]["paused_at"]
    assert exported["q"]["paused_at"] is None
    admin.remove_many(["p", "q"])
    admin.import_state(json.dumps(doc))
    p, q = admin.get("p"), admin.get("q")
    assert (p.paused_reason, p.paused_by, p.paused_at) == \
        (paused.paused_reason, paused.paused_by, paused.paused_at)
    assert q.paused_at is None
    # onto an existing task: paused_at null resumes it, a missing key leaves it alone
    exported["p"]["paused_at"] = None
    admin.import_state(json.dumps(doc))
    assert admin.get("p").paused_at is None and admin.get("p").paused_reason is None
    admin.pause("q", "hold")
    for key in ("paused_at", "paused_reason", "paused_by"):
        exported["q"].pop(key)
    admin.import_state(json.dumps(doc))
    assert admin.get("q").paused_reason == "hold"
    bad = dict(exported["p"], paused_at="2026-03-01T12:00:00+00:00", paused_reason=7)
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match="paused_reason"):
        admin.import_state(json.dumps(dict(doc, tasks=[bad])))
    assert snapshot(admin) == before


def test_import_validates_everything_first(admin):
    admin.add("keep", "t", every(seconds=1))
    bad = {"format": "celery-beatx/1", "tasks": [
        {"name": "ok", "task": "t", "schedule": {"type": "interval", "seconds": 5}},
        {"name": "broken", "task": "t", "schedule": {"type": "crontab", "minute": "99"}},
    ]}
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule, match="broken"):
        admin.import_state(json.dumps(bad), mode="replace")
    assert snapshot(admin) == before
    with pytest.raises(InvalidSchedule, match="format"):
        admin.import_state(json.dumps({"format": "other", "tasks": []}))
    with pytest.raises(InvalidSchedule):
        admin.import_state("{not json")


def test_celery_schedules_accepted(admin):
    from celery.schedules import crontab as ccrontab
    from celery.schedules import schedule as cschedule

    assert admin.add("s", "t", cschedule(timedelta(seconds=42))).schedule == every(seconds=42)
    info = admin.add("c", "t", ccrontab(minute="15", hour="3", day_of_week="mon-fri"))
    assert info.schedule.to_dict()["type"] == "crontab"
    assert admin.add("n", "t", 90).schedule == every(seconds=90)


def test_change_feed_revision_increases(admin):
    from celery_beatx.store.repository import Repository

    repo = Repository(admin.engine)
    admin.add("a", "t", every(seconds=1))
    with repo.transaction() as s:
        r1 = repo.current_revision(s)
    admin.update("a", args=[1])
    admin.remove("a")
    with repo.transaction() as s:
        changed, gone, upto = repo.changes_since(s, r1)
        assert upto == repo.current_revision(s)
        assert changed == [] and [g.name for g in gone] == ["a"]
        assert gone[0].revision > r1


def test_change_feed_never_skips_a_revision_beyond_the_counter(admin):
    """A row whose revision is past the committed counter (its writer's commit not yet seen
    by an earlier statement) is left for the next poll instead of being skipped forever."""
    from sqlalchemy import update

    from celery_beatx.store.models import Task
    from celery_beatx.store.repository import Repository

    repo = Repository(admin.engine)
    admin.add("a", "t", every(seconds=1))
    with repo.transaction() as s:
        seen = repo.current_revision(s)
        s.execute(update(Task).where(Task.name == "a").values(revision=seen + 1))
    with repo.transaction() as s:
        changed, gone, upto = repo.changes_since(s, seen)
        assert (changed, gone, upto) == ([], [], seen)
    with repo.transaction() as s:
        repo.next_revision(s)
    with repo.transaction() as s:
        changed, gone, upto = repo.changes_since(s, seen)
        assert [t.name for t in changed] == ["a"] and upto == seen + 1
