"""health(): heartbeats in database time, overdue tasks, stuck runs, schema, outcomes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from celery_beatx import AlertConfig, BeatAdmin, InvalidSchedule, every
from celery_beatx.store.models import Instance


@pytest.fixture(autouse=True)
def _real_time(clock):  # noqa: ANN001
    """health() judges in database time: tasks are added on the same clock."""
    clock.now = datetime.now(timezone.utc)


def beat_alive(admin, instance="host-a:1", role="leader", every_s=1.0):  # noqa: ANN001
    with admin.repo.transaction() as session:
        return admin.repo.heartbeat(session, instance, role=role,
                                    started_at=admin.clock(), host="h", pid=1, every=every_s)


def age_heartbeat(admin, seconds, instance="host-a:1"):  # noqa: ANN001
    with admin.repo.transaction() as session:
        now = admin.repo.db_now(session)
        session.execute(sa.update(Instance).where(Instance.instance_id == instance)
                        .values(heartbeat_at=now - timedelta(seconds=seconds)))


def test_no_beat_then_a_live_leader_then_a_frozen_one(admin):
    report = admin.health()
    assert not report.healthy and report.leader is None
    assert report.problems == ["no beat has written a heartbeat to this database"]
    assert report.schema.ok
    beat_alive(admin)
    report = admin.health()
    assert report.healthy, report.problems
    assert report.leader == "host-a:1"
    assert [(i.role, i.alive, i.heartbeat_every) for i in report.instances] == [
        ("leader", True, 1.0)]
    assert report.instances[0].heartbeat_age < 1.0
    # 2 x 1 s + 1 s is the limit
    age_heartbeat(admin, 2.5)
    assert admin.health().healthy
    age_heartbeat(admin, 3.2)
    report = admin.health()
    assert not report.healthy
    assert "no beat is alive" in report.problems[0] and "host-a:1" in report.problems[0]
    # a slower beat is judged by its own pace
    beat_alive(admin, every_s=5.0)
    age_heartbeat(admin, 10.0)
    assert admin.health().healthy


def test_standby_only_and_two_singles_are_problems(admin):
    beat_alive(admin, "a:1", role="standby")
    report = admin.health()
    assert not report.healthy and "standby" in report.problems[0]
    beat_alive(admin, "b:2", role="single")
    assert admin.health().healthy
    beat_alive(admin, "c:3", role="single")
    report = admin.health()
    assert not report.healthy and "beatx_ha is off" in report.problems[0]


def test_a_stopped_instance_is_not_alive(admin):
    beat_alive(admin)
    with admin.repo.transaction() as session:
        admin.repo.mark_instance_stopped(session, "host-a:1")
    report = admin.health()
    assert not report.healthy and "stopped" in report.problems[0]


def test_overdue_tasks_count_unless_paused_blocked_or_within_grace(admin, clock):
    beat_alive(admin, every_s=60.0)  # alive however slow the steps below
    admin.add("late", "t.l", every(60))
    admin.add("paused", "t.p", every(60))
    admin.add("blocked", "t.b", every(60))
    admin.add("jittery", "t.j", every(60), jitter=3600)
    with admin.repo.transaction() as session:
        db_now = admin.repo.db_now(session)
        admin.repo.add_runs(session, [{
            "task_name": "blocked", "task_id": "b1", "scheduled_at": db_now, "attempt": 0,
            "status": "blocked", "kind": "scheduled", "created_at": db_now}])
    with admin.engine.begin() as conn:
        conn.execute(sa.text("UPDATE beatx_tasks SET next_run_at = :t"),
                     {"t": (db_now - timedelta(seconds=120)).replace(tzinfo=None)})
        conn.execute(sa.text("UPDATE beatx_tasks SET paused_at = :t WHERE name = 'paused'"),
                     {"t": db_now.replace(tzinfo=None)})
    report = admin.health()
    assert [o.name for o in report.overdue] == ["late"]
    assert 110 < report.overdue[0].late_seconds < 200
    assert not report.healthy and "overdue" in report.problems[0]
    assert admin.health(overdue_grace=600).healthy


def test_a_stuck_run_makes_it_unhealthy(admin, clock):
    beat_alive(admin, every_s=60.0)
    admin.add("hung", "t.h", every(60), alerts=AlertConfig(stuck_seconds=30))
    with admin.repo.transaction() as session:
        db_now = admin.repo.db_now(session)
        admin.repo.add_runs(session, [{
            "task_name": "hung", "task_id": "h1", "scheduled_at": db_now, "attempt": 0,
            "status": "stuck", "kind": "scheduled", "created_at": db_now,
            "reason": "sent and not started within 30 s"}])
    report = admin.health()
    assert not report.healthy
    assert [(r.task_name, r.task_id) for r in report.stuck] == [("hung", "h1")]
    assert report.stuck_count == 1 and "stuck" in report.problems[0]
    # per-process liveness: this beat is alive, the stuck run is only a warning then
    live = admin.health(instance="host-a")
    assert live.healthy and any("stuck" in w for w in live.warnings)
    dead = admin.health(instance="host-b")
    assert not dead.healthy and "host-b" in dead.problems[0]


def test_invalid_tasks_open_alerts_and_missing_outcomes_are_warnings(admin, clock):
    beat_alive(admin, every_s=60.0)
    admin.add("broken", "t.b", every(60))
    admin.add("gated", "t.g", every(60), overlap="skip")
    with admin.repo.transaction() as session:
        admin.repo.mark_invalid(session, {"broken": "InvalidSchedule: nope"})
        admin.repo.add_alert(session, level="critical", kind="invalid_schedule",
                             task_name="broken", message="task 'broken' cannot be scheduled",
                             at=clock())
        db_now = admin.repo.db_now(session)
        admin.repo.add_runs(session, [{
            "task_name": "gated", "task_id": "g1", "scheduled_at": db_now, "attempt": 0,
            "status": "sent", "kind": "scheduled", "created_at": db_now,
            "sent_at": db_now - timedelta(minutes=10)}])
    report = admin.health()
    assert report.healthy, report.problems
    assert [(t.name, t.reason) for t in report.invalid] == [("broken", "InvalidSchedule: nope")]
    assert [a.kind for a in report.open_alerts] == ["invalid_schedule"]
    assert report.outcomes is not None and not report.outcomes.recorded
    assert report.outcomes.examples == ["gated"]
    text = " | ".join(report.warnings)
    assert "cannot be scheduled" in text and "open alert" in text and "track" in text
    data = report.to_dict()
    assert data["healthy"] is True and data["outcomes"]["recorded"] is False
    assert data["schema"]["ok"] is True


def test_schema_state_of_an_empty_database(tmp_path):
    admin = BeatAdmin(url=f"sqlite:///{tmp_path}/empty.sqlite3", auto_migrate=True)
    report = admin.health()
    assert not report.healthy and report.schema.current is None
    assert "migrate" in report.problems[0]
    admin.engine.dispose()


def test_health_validates_its_arguments(admin):
    with pytest.raises(InvalidSchedule, match="overdue_grace"):
        admin.health(overdue_grace=-1)
    with pytest.raises(InvalidSchedule, match="instance"):
        admin.health(instance="")
