"""A real beat and a real worker deliver interval and crontab tasks through real brokers.

Both stacks run at the same time, so one minute boundary serves both crontab checks:

- RabbitMQ + SQLite, ``-S celery_beatx.Scheduler``
- Redis + PostgreSQL, ``-S beatx`` (the alias registered as a ``celery.beat_schedulers``
  entry point)
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from harness import Cluster, duplicates, wait_for

from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

STACKS = (("rabbitmq", "sqlite", "celery_beatx.Scheduler"),
          ("redis", "postgresql", "beatx"))
SCHEDULE = {
    "every2": {"every": 2, "args": ["every2"]},
    "minutely": {"crontab": "*", "args": ["minutely"]},
}


def test_interval_and_crontab_through_rabbitmq_and_redis(make_cluster, admin_for):
    clusters = [make_cluster(broker, db, schedule=SCHEDULE) for broker, db, _ in STACKS]
    workers = [c.start_worker(wait=False) for c in clusters]
    for worker in workers:
        worker.wait_log("ready.", 30)
    beats = [c.start_beat(scheduler, wait=False) for c, (*_, scheduler) in zip(clusters, STACKS)]
    for beat in beats:
        beat.wait_log("beat: loaded", 30)
        assert "celery_beatx.scheduler.Scheduler" in beat.output()

    admins = [admin_for(c) for c in clusters]
    boundaries = []
    for admin in admins:
        # Both entries of beat_schedule were synced into the database as config tasks.
        minutely = admin.get("minutely")
        assert minutely.source == "config" and admin.get("every2").source == "config"
        # The first minute boundary beat scheduled (read after next_run_at, so a run sent
        # in between is seen in the history).
        sent = admin.history("minutely")
        boundary = sent[-1].scheduled_at if sent else minutely.next_run_at
        assert boundary is not None and boundary.second == 0 and boundary.microsecond == 0
        boundaries.append(boundary)

    for cluster in clusters:
        check_interval(cluster)
    for cluster, boundary in zip(clusters, boundaries):
        check_crontab(cluster, boundary)
    for cluster, admin, beat in zip(clusters, admins, beats):
        assert beat.stop() == 0, f"{cluster.broker_url}: beat did not exit cleanly"
        check_runs(cluster, admin)


def check_interval(cluster: Cluster) -> None:
    """Every 2 s, on a fixed grid, executed promptly by the worker."""
    runs = cluster.wait_markers(3, timeout=15, entry="every2")
    gaps = [b.scheduled_at - a.scheduled_at for a, b in zip(runs, runs[1:])]
    assert all(gap == timedelta(seconds=2) for gap in gaps), (cluster.broker_url, gaps)
    for m in runs:
        assert m.label == "every2"
        assert 0 <= m.time - m.scheduled_at.timestamp() < 2.5, (cluster.broker_url, m)


def check_crontab(cluster: Cluster, boundary) -> None:
    """Once, at the minute boundary beat computed when it started."""
    wait = boundary.timestamp() - time.time() + 10
    run = cluster.wait_markers(1, timeout=max(wait, 1), entry="minutely")[0]
    assert run.label == "minutely"
    assert run.scheduled_at == boundary, (cluster.broker_url, run)
    assert 0 <= run.time - boundary.timestamp() < 3, (cluster.broker_url, run)


def check_runs(cluster: Cluster, admin) -> None:
    """Every send is in beatx_runs with its deterministic id and ran exactly once."""
    history = {name: admin.history(name, limit=1000) for name in SCHEDULE}
    sent = sum(len(h) for h in history.values())
    # Let the worker finish what beat sent before it stopped.
    wait_for(lambda: len(cluster.markers()) >= sent, 10, f"the worker to run all {sent} sends")
    markers = cluster.markers()
    assert not duplicates(m.task_id for m in markers), cluster.broker_url
    for name, runs in history.items():
        assert admin.get(name).total_run_count == len(runs)
        assert not duplicates(r.scheduled_at for r in runs)
        for run in runs:
            assert run.status in ("sent", "started", "succeeded"), run
            # uuid5 of (task name, scheduled time, attempt)
            assert run.task_id == run_task_id(name, run.scheduled_at, run.attempt)
    assert {m.task_id for m in markers} == {r.task_id for h in history.values() for r in h}
