"""Embedded beat: ``celery worker -B --scheduler celery_beatx.Scheduler`` runs our scheduler.

On ``celery worker``, ``-S`` is ``--statedb``: ``worker -B -S celery_beatx.Scheduler`` runs
the stock scheduler and writes a state file called ``celery_beatx.Scheduler``. Both are run
here side by side, so the README's warning is checked too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from harness import duplicates, wait_for

from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCHEDULE = {"every2": {"seconds": 2, "args": ["every2"]}}


def test_worker_dash_b_with_scheduler_option_runs_celery_beatx(make_cluster, admin_for):
    ours = make_cluster("redis", "postgresql", schedule=SCHEDULE)
    stock = make_cluster("rabbitmq", "sqlite", schedule=SCHEDULE)
    embedded = ours.start_embedded(wait=None)
    wrong = stock.start_embedded(option="-S", wait=None)
    embedded.wait_log("beat: loaded", 45)
    wrong.wait_log("ready.", 45)

    runs = ours.wait_markers(3, timeout=20, entry="every2")
    gaps = [b.scheduled_at - a.scheduled_at for a, b in zip(runs, runs[1:])]
    assert all(gap == timedelta(seconds=2) for gap in gaps), gaps

    # The -S spelling: tasks do run, but sent by the stock scheduler (no beatx_run header,
    # nothing in the database) and "-S" went to --statedb.
    stock_runs = stock.wait_markers(2, timeout=20, label="every2")
    assert all(m.entry is None and m.scheduled_at is None for m in stock_runs)
    assert "beat: loaded" not in wrong.output()
    assert any(p.name.startswith("celery_beatx.Scheduler") for p in stock.workdir.iterdir())

    assert embedded.stop() == 0, "the worker did not exit cleanly"
    admin = admin_for(ours)
    history = admin.history("every2", limit=1000)
    info = admin.get("every2")
    assert info.source == "config" and info.total_run_count == len(history) >= 3
    wait_for(lambda: len(ours.markers()) >= len(history), 10, "the worker to run every send")
    markers = ours.markers()
    assert not duplicates(m.task_id for m in markers)
    assert {m.task_id for m in markers} == {r.task_id for r in history}
    for run in history:
        assert run.status in ("sent", "started", "succeeded"), run
        assert run.task_id == run_task_id("every2", run.scheduled_at, run.attempt)
    # The statedb option was not used: the stock scheduler's shelve is not there either.
    assert not any(p.name.startswith("celery_beatx.Scheduler") for p in ours.workdir.iterdir())
    assert admin_for(stock).list() == []
