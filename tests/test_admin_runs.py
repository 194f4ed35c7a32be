"""history, stats, run_now, backfill, pause/resume and stuck runs, on real SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from test_admin import snapshot

from celery_beatx import InvalidSchedule, TaskNotFound, cron, every
from celery_beatx.admin import BeatAdmin
from celery_beatx.beat.dispatch import run_task_id
from celery_beatx.states import RUNS_COUNTER

UTC = timezone.utc


def add_runs(admin: BeatAdmin, name: str, rows: list[dict[str, Any]]) -> None:
    """Run rows as beat and the worker hook leave them (defaults filled in)."""
    base = admin.clock()
    full = []
    for i, row in enumerate(rows):
        when = row.pop("scheduled_at", base - timedelta(minutes=len(rows) - i))
        full.append({"task_name": name, "task_id": run_task_id(name, when, 0),
                     "scheduled_at": when, "attempt": 0, "kind": "scheduled",
                     "instance_id": "beat-1", "created_at": when, "duplicates": 0,
                     **dict.fromkeys(("reason", "sent_at", "started_at", "finished_at",
                                      "runtime", "error", "worker")), **row})
    with admin._tx() as session:
        admin.repo.add_runs(session, full)


def counter(admin: BeatAdmin) -> int:
    with admin._tx(readonly=True) as session:
        return admin.repo.counter(session, RUNS_COUNTER)


# -- history and stats -----------------------------------------------------------------------

def test_history_shows_outcomes_newest_first(admin, clock):
    admin.add("job", "proj.job", every(minutes=1))
    add_runs(admin, "job", [
        {"status": "succeeded", "runtime": 0.5, "worker": "w1@h", "duplicates": 1},
        {"status": "skipped", "reason": "overlap: the previous run has not finished"},
        {"status": "failed", "error": "ValueError: no", "runtime": 0.1},
    ])
    runs = admin.history("job")
    assert [r.status for r in runs] == ["failed", "skipped", "succeeded"]
    assert runs[0].error == "ValueError: no" and runs[0].kind == "scheduled"
    assert runs[1].reason.startswith("overlap")
    assert (runs[2].worker, runs[2].duplicates, runs[2].runtime) == ("w1@h", 1, 0.5)
    assert [r.status for r in admin.history("job", limit=1)] == ["failed"]


@pytest.mark.parametrize("limit", [0, -1, "5", True, 2.5])
def test_history_refuses_a_bad_limit(admin, limit):
    with pytest.raises(InvalidSchedule) as err:
        admin.history("job", limit=limit)
    assert err.value.field == "limit"


def test_stats(admin, clock):
    admin.add("job", "proj.job", every(minutes=1))
    runtimes = [float(i) for i in range(1, 21)]
    rows: list[dict[str, Any]] = [{"status": "succeeded", "runtime": r} for r in runtimes]
    rows[4] = {"status": "failed", "runtime": 5.0, "error": "KeyError: 'a'",
               "finished_at": clock.now - timedelta(minutes=30)}
    rows[9] = {"status": "failed", "runtime": 10.0, "error": "ValueError: newest",
               "finished_at": clock.now - timedelta(minutes=2), "duplicates": 2}
    rows += [{"status": "sent"}, {"status": "skipped", "reason": "catch-up"},
             {"status": "started"}]
    add_runs(admin, "job", rows)
    stats = admin.stats("job")
    assert stats.total == 23
    assert stats.counts == {"failed": 2, "sent": 1, "skipped": 1, "started": 1,
                            "succeeded": 18}
    assert (stats.succeeded, stats.failed) == (18, 2)
    assert stats.success_rate == pytest.approx(0.9)
    assert stats.mean_runtime == pytest.approx(10.5)
    assert stats.p95_runtime == 19.0  # nearest rank: the 19th of 20
    assert stats.last_error == "ValueError: newest"
    assert stats.last_error_at == clock.now - timedelta(minutes=2)
    assert stats.duplicates == 2


def test_stats_without_runs_and_of_a_removed_task(admin):
    admin.add("quiet", "proj.quiet", every(minutes=1))
    empty = admin.stats("quiet")
    assert (empty.total, empty.success_rate, empty.mean_runtime, empty.p95_runtime,
            empty.last_error) == (0, None, None, None, None)
    add_runs(admin, "quiet", [{"status": "succeeded", "runtime": 1.0}])
    admin.remove("quiet")
    assert admin.stats("quiet").success_rate == 1.0  # history outlives the task
    with pytest.raises(TaskNotFound):
        admin.stats("never")


# -- run_now ---------------------------------------------------------------------------------

def test_run_now_queues_one_manual_run_and_leaves_the_schedule(admin, clock):
    info = admin.add("job", "proj.job", every(hours=1))
    before = counter(admin)
    clock.advance(minutes=5)
    run = admin.run_now("job")
    assert (run.status, run.kind, run.attempt) == ("pending", "manual", 0)
    assert run.scheduled_at == clock.now
    assert run.task_id == run_task_id("job", clock.now, 0)
    assert counter(admin) == before + 1
    with admin._tx(readonly=True) as session:
        assert admin.repo.get_run(session, run.task_id).instance_id is None
    after = admin.get("job")
    assert (after.next_run_at, after.last_run_at, after.total_run_count, after.version) == \
        (info.next_run_at, None, 0, 1)
    # The same instant is the same run; a later one is another.
    assert admin.run_now("job") == run and counter(admin) == before + 1
    clock.advance(seconds=1)
    assert admin.run_now("job").task_id != run.task_id
    assert len(admin.history("job")) == 2


def test_run_now_of_a_disabled_or_paused_task_and_of_none(admin):
    admin.add("off", "proj.off", every(hours=1), enabled=False)
    assert admin.run_now("off").status == "pending"
    admin.add("held", "proj.held", every(hours=1))
    admin.pause("held")
    assert admin.run_now("held").kind == "manual"
    with pytest.raises(TaskNotFound):
        admin.run_now("missing")


# -- backfill --------------------------------------------------------------------------------

def test_backfill_queues_each_occurrence_once(admin, clock):
    admin.add("job", "proj.job", every(minutes=10))  # on the grid through 12:10
    start = clock.now - timedelta(hours=1)
    before = counter(admin)
    assert admin.backfill("job", start, clock.now) == 6
    assert counter(admin) == before + 1
    runs = sorted(admin.history("job"), key=lambda r: r.scheduled_at)
    expected = [start + timedelta(minutes=10 * i) for i in range(6)]
    assert [r.scheduled_at for r in runs] == expected
    assert all(r.kind == "backfill" and r.status == "pending" for r in runs)
    assert [r.task_id for r in runs] == [run_task_id("job", t, 0) for t in expected]
    # Twice the same window: nothing new, and the counter does not move.
    assert admin.backfill("job", start, clock.now) == 0
    assert counter(admin) == before + 1
    # A wider window: only the occurrences not queued yet.
    assert admin.backfill("job", start - timedelta(minutes=30), clock.now) == 3
    assert admin.get("job").next_run_at == clock.now + timedelta(minutes=10)


def test_backfill_skips_occurrences_that_ran_and_follows_crontab(admin, clock):
    admin.add("hourly", "proj.hourly", cron("15 * * * *"))
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    ran = datetime(2026, 3, 1, 9, 15, tzinfo=UTC)
    add_runs(admin, "hourly", [{"status": "succeeded", "scheduled_at": ran}])
    assert admin.backfill("hourly", start, datetime(2026, 3, 1, 11, 15, tzinfo=UTC)) == 2
    times = sorted(r.scheduled_at for r in admin.history("hourly") if r.kind == "backfill")
    assert times == [datetime(2026, 3, 1, 8, 15, tzinfo=UTC),
                     datetime(2026, 3, 1, 10, 15, tzinfo=UTC)]


@pytest.mark.parametrize("start, end, field", [
    (datetime(2026, 3, 1, 11, 0), datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "start"),
    (datetime(2026, 3, 1, 11, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 0), "end"),
    (datetime(2026, 3, 1, 11, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 1, tzinfo=UTC), "end"),
    (datetime(2026, 3, 1, 11, 0, tzinfo=UTC), datetime(2026, 3, 1, 11, 0, tzinfo=UTC), "end"),
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "end"),  # too many
])
def test_backfill_refuses_bad_windows_and_writes_nothing(admin, start, end, field):
    admin.add("job", "proj.job", every(minutes=1))
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule) as err:
        admin.backfill("job", start, end)
    assert err.value.field == field
    assert snapshot(admin) == before


def test_backfill_of_a_missing_task(admin, clock):
    with pytest.raises(TaskNotFound):
        admin.backfill("missing", clock.now - timedelta(hours=1), clock.now)


# -- pause / resume --------------------------------------------------------------------------

def test_pause_and_resume_keep_who_when_why_and_the_next_run(db_url, clock):
    admin = BeatAdmin(url=db_url, clock=clock, instance_id="ops-console")
    try:
        info = admin.add("job", "proj.job", every(minutes=10))
        clock.advance(minutes=1)
        paused = admin.pause("job", "database maintenance")
        assert paused.paused and paused.paused_reason == "database maintenance"
        assert (paused.paused_by, paused.paused_at) == ("ops-console", clock.now)
        assert paused.revision > info.revision and paused.version == 1
        assert paused.enabled and paused.next_run_at == info.next_run_at
        assert admin.get("job") == paused
        with admin._tx(readonly=True) as session:  # the change feed carries it to beat
            changed, _, _ = admin.repo.changes_since(session, info.revision)
            assert [t.name for t in changed] == ["job"]
        clock.advance(hours=2)  # several occurrences pass while paused
        resumed = admin.resume("job")
        assert not resumed.paused and resumed.paused_reason is None
        assert resumed.paused_by is None and resumed.paused_at is None
        assert resumed.revision > paused.revision
        # Not recomputed: the missed occurrences go to the catch-up policy at send time.
        assert resumed.next_run_at == info.next_run_at
        assert admin.resume("job").revision == resumed.revision  # not paused: no change
        assert [v.version for v in admin.versions("job")] == [1]
    finally:
        admin.engine.dispose()


def test_pause_without_instance_id_names_admin(admin):
    admin.add("job", "proj.job", every(minutes=10))
    assert admin.pause("job").paused_by == "admin"
    assert admin.pause("job", "again").paused_reason == "again"


@pytest.mark.parametrize("reason", [None, 5, "x" * 2001, "bad\x00"])
def test_pause_refuses_a_bad_reason_and_writes_nothing(admin, reason):
    admin.add("job", "proj.job", every(minutes=10))
    before = snapshot(admin)
    with pytest.raises(InvalidSchedule) as err:
        admin.pause("job", reason)
    assert err.value.field == "reason"
    assert snapshot(admin) == before


def test_pause_and_resume_of_a_missing_task(admin):
    with pytest.raises(TaskNotFound):
        admin.pause("missing")
    with pytest.raises(TaskNotFound):
        admin.resume("missing")


# -- stuck runs ------------------------------------------------------------------------------

def test_mark_stuck_uses_each_task_threshold(admin, clock):
    now = clock.now
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    add_runs(admin, "a", [
        {"status": "sent", "sent_at": ago(minutes=10), "scheduled_at": ago(minutes=10)},
        {"status": "sent", "sent_at": ago(minutes=2), "scheduled_at": ago(minutes=2)},
        {"status": "started", "sent_at": ago(hours=1), "started_at": ago(minutes=6),
         "scheduled_at": ago(hours=1)},
    ])
    add_runs(admin, "b", [
        {"status": "started", "started_at": ago(minutes=20), "scheduled_at": ago(minutes=20)},
        {"status": "started", "started_at": ago(minutes=5), "scheduled_at": ago(minutes=5)},
        {"status": "succeeded", "started_at": ago(hours=5), "scheduled_at": ago(hours=5)},
    ])
    add_runs(admin, "c", [
        {"status": "sent", "sent_at": ago(days=1), "scheduled_at": ago(days=1)}])
    thresholds = {"a": 300.0, "c": 0}
    with admin._tx() as session:
        marked = admin.repo.mark_stuck(session, now, thresholds, default=600.0)
    assert sorted((name, status) for name, _, status in marked) == [
        ("a", "sent"), ("a", "started"), ("b", "started")]
    runs = {(r.task_name, r.scheduled_at): r for n in "abc" for r in admin.history(n)}
    assert runs[("a", ago(minutes=10))].status == "stuck"
    assert runs[("a", ago(minutes=10))].reason == "sent and not started within 300 s"
    assert runs[("a", ago(minutes=2))].status == "sent"
    assert runs[("a", ago(hours=1))].reason == "started and not finished within 300 s"
    assert runs[("b", ago(minutes=20))].reason == "started and not finished within 600 s"
    assert runs[("b", ago(minutes=5))].status == "started"
    assert runs[("c", ago(days=1))].status == "sent"  # 0: not checked
    with admin._tx() as session:
        assert admin.repo.mark_stuck(session, now, thresholds, default=600.0) == []
        assert admin.repo.mark_stuck(session, now, {}, default=None) == []


def test_mark_stuck_with_thousands_of_tasks_costs_a_few_statements(admin, clock):
    now = clock.now
    thresholds = {f"task-{i}": float(60 + i % 7) for i in range(5000)}
    add_runs(admin, "task-3", [{"status": "sent", "sent_at": now - timedelta(minutes=5),
                                "scheduled_at": now - timedelta(minutes=5)}])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(admin.engine, "before_cursor_execute", count)
    try:
        with admin._tx() as session:
            statements.clear()
            marked = admin.repo.mark_stuck(session, now, thresholds, default=None)
            used = [s for s in statements if "beatx_runs" in s]
    finally:
        sa.event.remove(admin.engine, "before_cursor_execute", count)
    assert [name for name, _, _ in marked] == ["task-3"]
    assert len(used) == 2  # one read of the candidates, one update


@pytest.mark.parametrize("name", ["job", "", "naïve ß €", "emoji 😀", "nul\x00in name"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Kolkata"])
def test_run_task_ids_are_uuid5_of_name_time_and_attempt(name, zone):
    """The id of a run is ``uuid5(RUN_NAMESPACE, name NUL UTC-ISO-time NUL attempt)``
    whatever zone the time is given in: ids written by earlier releases stay the ids of the
    same runs (beat's own computation must not drift from this definition)."""
    import uuid
    from zoneinfo import ZoneInfo

    from celery_beatx.beat.dispatch import RUN_NAMESPACE

    at = datetime(2026, 3, 29, 1, 30, 15, 250_000, tzinfo=timezone.utc)
    local = at.astimezone(ZoneInfo(zone))
    for attempt in (0, 1, 17):
        expected = str(uuid.uuid5(RUN_NAMESPACE, f"{name}\x00{at.isoformat()}\x00{attempt}"))
        assert run_task_id(name, local, attempt) == expected
        assert run_task_id(name, at, attempt) == expected
    assert run_task_id(name, at, 0) != run_task_id(name, at + timedelta(microseconds=1), 0)
