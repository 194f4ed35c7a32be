"""One-off, composite and calendar-limited schedules sent by a real beat to a real worker.

- ``once``: Redis + SQLite (a one-off in the future, one deleted after its run, one already
  past when beat starts).
- ``any_of`` of two anchored intervals: RabbitMQ + PostgreSQL.
- a ``Calendar`` blackout that covers "now": Redis + PostgreSQL.

The tasks are added through :class:`~celery_beatx.BeatAdmin`; what ran is read from the
worker's marker file (one line per execution, with the ``beatx_run`` header beat sent) and
from ``beatx_runs`` (``BeatAdmin.history``).
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import pytest
from harness import Cluster, Marker, duplicates, wait_for

from celery_beatx import Calendar, TaskNotFound, any_of, every, once
from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

UTC = timezone.utc
#: Broker delivery, worker execution and process scheduling on a busy CI machine.
SLACK = 2.5


def utcnow() -> datetime:
    return datetime.now(UTC)


def whole_second_after(seconds: float) -> datetime:
    """The first whole second at least ``seconds`` from now (aware UTC)."""
    return datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)


def drain(cluster: Cluster, admin, names: list[str]) -> dict[str, list]:
    """Every run beat recorded for ``names`` (oldest first), once the worker ran them all."""
    history = {name: sorted(admin.history(name, limit=10_000), key=lambda r: r.scheduled_at)
               for name in names}
    sent = {r.task_id for runs in history.values() for r in runs}
    wait_for(lambda: sent <= {m.task_id for m in cluster.markers()}, 15,
             f"the worker to run all {len(sent)} recorded sends")
    return history


def check_runs_match_markers(cluster: Cluster, history: dict[str, list]) -> None:
    """No task id twice; each beatx_runs row ran once, with its deterministic id and header."""
    markers = cluster.markers()
    assert not duplicates(m.task_id for m in markers)
    by_id = {m.task_id: m for m in markers}
    for name, runs in history.items():
        assert not duplicates(r.scheduled_at for r in runs), name
        for run in runs:
            assert run.status in ("sent", "started", "succeeded"), run
            assert run.task_id == run_task_id(name, run.scheduled_at, run.attempt), run
            marker = by_id[run.task_id]
            assert (marker.entry, marker.scheduled_at) == (name, run.scheduled_at), marker
        assert {m.task_id for m in markers if m.entry == name} == {r.task_id for r in runs}


def test_once_runs_exactly_once_then_is_disabled_or_deleted(make_cluster, admin_for):
    cluster = make_cluster("redis", "sqlite",
                           schedule={"control": {"every": 1, "args": ["control"]}})
    admin = admin_for(cluster)
    # Already past before beat starts: due at once (at the next tick after creation).
    created = utcnow()
    admin.add("late", "e2eapp.mark", once(created - timedelta(seconds=60)), args=["late"])
    pending = admin.get("late")
    assert pending.enabled and pending.next_run_at is not None
    assert created <= pending.next_run_at <= utcnow(), pending

    cluster.start_worker()
    spawned = time.time()
    beat = cluster.start_beat()
    loaded = time.time()
    [late] = cluster.wait_markers(1, timeout=10, entry="late")
    assert late.label == "late" and late.scheduled_at == pending.next_run_at, late
    assert spawned < late.time < loaded + SLACK, (spawned, late, loaded)

    # In the future, added while beat runs: one to disable, one to delete after its run.
    at = whole_second_after(3)
    admin.add("once", "e2eapp.mark", once(at), args=["once"])
    admin.add("once_del", "e2eapp.mark", once(at, cleanup="delete"), args=["once_del"])
    assert admin.get("once").next_run_at == at == admin.get("once_del").next_run_at
    until_due = at.timestamp() - time.time()
    for name in ("once", "once_del"):
        [run] = cluster.wait_markers(1, timeout=until_due + 10, entry=name)
        assert run.label == name and run.scheduled_at == at, run
        assert 0 <= run.time - at.timestamp() < SLACK, run

    # A few more seconds (and a beat restart) to prove there is no second run.
    time.sleep(max(0.0, at.timestamp() + 4 - time.time()))
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"
    restarted = time.time()
    beat = cluster.start_beat()
    cluster.wait_markers(2, timeout=10, entry="control", where=lambda m: m.time > restarted)
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"

    for name in ("late", "once"):
        info = admin.get(name)
        assert not info.enabled and info.next_run_at is None, info
        assert info.total_run_count == 1 and info.last_run_at is not None, info
    with pytest.raises(TaskNotFound):
        admin.get("once_del")
    assert "once_del" not in {t.name for t in admin.list()}

    history = drain(cluster, admin, ["late", "once", "once_del", "control"])
    for name in ("late", "once", "once_del"):
        assert len(cluster.markers(entry=name)) == 1, cluster.markers(entry=name)
        assert len(history[name]) == 1, history[name]
    # The deleted task's run stays in the history.
    assert history["once_del"][0].scheduled_at == at
    check_runs_match_markers(cluster, history)


def test_any_of_two_anchored_intervals_fires_on_both_grids(make_cluster, admin_for):
    cluster = make_cluster("rabbitmq", "postgresql")
    admin = admin_for(cluster)
    cluster.start_worker()
    beat = cluster.start_beat()

    t0 = whole_second_after(3)
    admin.add("both", "e2eapp.mark",
              any_of(every(seconds=2, anchor=t0), every(seconds=3, anchor=t0)), args=["both"])
    # The union of both grids, each instant once.
    expected = [k for k in range(13) if k % 2 == 0 or k % 3 == 0]
    assert admin.get("both").next_run_at == t0
    assert admin.next_runs("both", 8) == [t0 + timedelta(seconds=k) for k in expected[:8]]

    last = t0 + timedelta(seconds=expected[-1])
    cluster.wait_markers(1, timeout=last.timestamp() - time.time() + 10, entry="both",
                         where=lambda m: m.scheduled_at >= last)
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"

    history = drain(cluster, admin, ["both"])
    markers = sorted(cluster.markers(entry="both"), key=lambda m: m.scheduled_at)
    offsets = [(m.scheduled_at - t0) / timedelta(seconds=1) for m in markers]
    print("any_of fired at t0 +", offsets)
    assert not duplicates(offsets), offsets
    assert all(o.is_integer() for o in offsets), offsets
    seen = [int(o) for o in offsets]
    # From t0 on, every instant of either grid, and nothing else (beat may have sent one or
    # two more before it stopped).
    assert seen[:len(expected)] == expected, seen
    assert all(k % 2 == 0 or k % 3 == 0 for k in seen), seen
    assert {3, 9} <= set(seen), "the 3 s grid did not fire off the 2 s grid"
    assert {2, 4, 8, 10} <= set(seen), "the 2 s grid did not fire off the 3 s grid"
    for m in markers:
        assert m.label == "both"
        assert 0 <= m.time - m.scheduled_at.timestamp() < SLACK, m
    assert [r.scheduled_at for r in history["both"]] == [m.scheduled_at for m in markers]
    assert admin.get("both").total_run_count == len(markers)
    check_runs_match_markers(cluster, history)


def test_calendar_blackout_covering_now_holds_the_task_until_it_ends(make_cluster, admin_for):
    cluster = make_cluster("redis", "postgresql")
    admin = admin_for(cluster)
    cluster.start_worker()
    beat = cluster.start_beat()

    now = utcnow()
    end = now + timedelta(seconds=8)
    calendar = Calendar(business_hours=None, weekdays=None,
                        blackouts=[(now - timedelta(minutes=1), end)], timezone="UTC")
    admin.add("blacked", "e2eapp.mark", every(seconds=1), args=["blacked"], calendar=calendar)
    admin.add("control", "e2eapp.mark", every(seconds=1), args=["control"])
    info = admin.get("blacked")
    assert info.calendar is not None
    # Its first run is moved to the end of the blackout.
    assert info.next_run_at is not None and end <= info.next_run_at < end + timedelta(seconds=1)

    def inside(m: Marker) -> bool:
        return m.time < end.timestamp()

    # The control task runs inside the blackout; the limited one does not.
    cluster.wait_markers(3, timeout=end.timestamp() - time.time(), entry="control",
                         where=inside)
    assert not cluster.markers(entry="blacked"), cluster.markers(entry="blacked")
    # ... and runs once it has ended.
    runs = cluster.wait_markers(3, timeout=end.timestamp() - time.time() + 10,
                                entry="blacked")
    assert beat.stop() == 0, "beat did not exit cleanly on SIGTERM"

    history = drain(cluster, admin, ["blacked", "control"])
    runs = sorted(cluster.markers(entry="blacked"), key=lambda m: m.scheduled_at)
    print("blacked ran at end +", [round(m.time - end.timestamp(), 3) for m in runs])
    for m in runs:
        assert m.scheduled_at >= end and m.time >= end.timestamp(), (end, m)
    assert runs[0].scheduled_at - end < timedelta(seconds=1), (end, runs[0])
    assert runs[0].time - end.timestamp() < SLACK, (end, runs[0])
    assert all(r.scheduled_at >= end for r in history["blacked"]), history["blacked"]
    assert [m for m in cluster.markers(entry="control") if m.scheduled_at < end]
    check_runs_match_markers(cluster, history)
