"""State survives a beat restart, the count continues and no scheduled time runs twice.

RabbitMQ + MariaDB.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from harness import duplicates, wait_for

from celery_beatx import every
from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NAMES = ("every2", "api3")
#: Longer than both intervals, so each task misses at least one occurrence while down.
DOWNTIME = 5.0


def test_restart_keeps_state_and_sends_each_time_once(make_cluster, admin_for):
    cluster = make_cluster("rabbitmq", "mariadb",
                           schedule={"every2": {"every": 2, "args": ["every2"]}})
    admin = admin_for(cluster)
    # One task from beat_schedule, one added through the admin API before beat first starts.
    admin.add("api3", "e2eapp.mark", every(seconds=3), args=["api3"])
    cluster.start_worker()
    beat = cluster.start_beat()
    first_up = time.time()  # api3's first time may pass before beat is up (a slow start)
    cluster.wait_markers(3, timeout=15, entry="every2")
    cluster.wait_markers(1, timeout=10, entry="api3")
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"

    before = {name: admin.get(name) for name in NAMES}
    for name, info in before.items():
        assert info.total_run_count >= 1 and info.last_run_at is not None, info
        assert info.total_run_count == len(admin.history(name, limit=1000))

    # Down long enough for scheduled times to pass (catchup="once": one of them is sent).
    stopped = time.time()
    time.sleep(DOWNTIME)
    beat = cluster.start_beat()
    restarted = time.time()
    for name, info in before.items():
        # What the restarted beat starts from is what the stopped one left.
        after = admin.get(name)
        assert after.total_run_count >= info.total_run_count, (info, after)
        assert after.last_run_at >= info.last_run_at
    cluster.wait_markers(3, timeout=15, entry="every2", where=lambda m: m.time > restarted)
    cluster.wait_markers(1, timeout=10, entry="api3", where=lambda m: m.time > restarted)
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"

    history = {name: admin.history(name, limit=1000) for name in NAMES}
    sent = sum(len(h) for h in history.values())
    wait_for(lambda: len(cluster.markers()) >= sent, 10, f"the worker to run all {sent} sends")
    markers = cluster.markers()
    assert not duplicates(m.task_id for m in markers)
    assert {m.task_id for m in markers} == {r.task_id for h in history.values() for r in h}

    for name, runs in history.items():
        info = admin.get(name)
        new = [r for r in runs if r.scheduled_at > before[name].last_run_at]
        # The count continues from where it was, one per send.
        assert info.total_run_count == before[name].total_run_count + len(new) == len(runs)
        assert info.last_run_at > before[name].last_run_at
        assert new, f"{name} did not run after the restart"
        assert not duplicates(r.task_id for r in runs)
        assert not duplicates(r.scheduled_at for r in runs), name
        ran = [m for m in markers if m.entry == name]
        assert not duplicates(m.scheduled_at for m in ran), name
        for run in runs:
            assert run.task_id == run_task_id(name, run.scheduled_at, run.attempt)
        # Of the occurrences missed while beat was down exactly one was sent, late, at the
        # restart (catchup="once", Celery's behaviour); every other run was sent on time.
        # (The catch-up is at least DOWNTIME - interval + beat's start-up time late.)
        late = [r for r in runs if r.sent_at - r.scheduled_at > timedelta(seconds=1.5)
                and r.scheduled_at.timestamp() > first_up]
        assert len(late) == 1 and late[0] in new, (name, late)
        catchup = late[0]
        assert stopped < catchup.sent_at.timestamp() < restarted + 2, (name, catchup)
        # Runs stay on the task's grid; the catch-up re-anchors it on its send time (as
        # Celery does), so the run after it comes a whole interval later, never at once.
        # (A slow first start can make the very first occurrence a catch-up too; a run that
        # is merely sent late, within the grace, stays on the grid.)
        times = sorted(r.scheduled_at for r in runs)
        sent_late = {r.scheduled_at: r.sent_at for r in runs if r.kind == "catchup"}
        step = timedelta(seconds=2 if name == "every2" else 3)
        for a, b in zip(times, times[1:]):
            if a in sent_late:
                assert b - sent_late[a] >= step - timedelta(seconds=0.5), (name, a, b)
            else:
                assert b > a and (b - a) % step == timedelta(0), (name, a, b)
