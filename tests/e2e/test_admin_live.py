"""Changes made through BeatAdmin while a real beat runs take effect within the sync bound.

Redis + SQLite (beat and the admin API write the same SQLite file concurrently).
"""

from __future__ import annotations

import time

import pytest
from harness import Cluster, duplicates

from celery_beatx import TaskNotFound, every
from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SYNC = 1.0  # beatx_sync_interval
INTERVAL = 2.0  # the changed task runs every INTERVAL s
SLACK = 1.5  # broker delivery, worker execution, process scheduling on a busy CI machine
#: A change is read by beat within SYNC s of its commit (change-feed poll) plus one tick
#: (1 s); from then on the task's next due time is at most INTERVAL s away; SLACK covers
#: the trip through the broker and the worker writing its marker.
APPEAR = SYNC + 1 + INTERVAL + SLACK
#: A disable/remove stops sends within SYNC + 1 s; a send made just before that may still
#: be executed up to SLACK s later.
STOP = SYNC + 1 + SLACK
#: How long we watch to be sure a stopped task stays stopped.
QUIET = STOP + 2 * INTERVAL


def first_after(cluster: Cluster, t0: float, label: str, timeout: float) -> float:
    """Seconds from ``t0`` to the first marker with ``label`` executed after ``t0``."""
    [m] = cluster.wait_markers(1, timeout=timeout, label=label, where=lambda m: m.time > t0)[:1]
    print(f"first {label!r} run {m.time - t0:.2f}s after the admin call")
    return m.time - t0


def live_after(cluster: Cluster, t0: float) -> list[float]:
    return [m.time - t0 for m in cluster.markers(entry="live") if m.time > t0]


def test_add_change_disable_enable_remove_while_beat_runs(make_cluster, admin_for):
    cluster = make_cluster("redis", "sqlite", sync_interval=SYNC,
                           schedule={"control": {"every": 2, "args": ["control"]}})
    admin = admin_for(cluster)
    cluster.start_worker()
    cluster.start_beat()
    cluster.wait_markers(1, timeout=10, label="control")

    # add: the new task's first run comes within the bound.
    t0 = time.time()
    admin.add("live", "e2eapp.mark", every(seconds=INTERVAL), args=["v1"],
              queue=cluster.queue)
    delay = first_after(cluster, t0, "v1", timeout=APPEAR + 10)
    assert delay <= APPEAR, f"added task first ran {delay:.2f}s after add() (bound {APPEAR}s)"
    cluster.wait_markers(2, timeout=2 * INTERVAL + 5, label="v1")

    # change its args: the new args show within the bound, the old ones stop.
    t1 = time.time()
    admin.update("live", args=["v2"])
    delay = first_after(cluster, t1, "v2", timeout=APPEAR + 10)
    assert delay <= APPEAR, f"changed args first seen {delay:.2f}s after update() (bound {APPEAR}s)"
    late_v1 = [m.time - t1 for m in cluster.markers(label="v1") if m.time > t1 + STOP]
    assert not late_v1, f"old args still ran {late_v1}s after update()"

    # disable: no run of it after STOP, while the control task keeps running.
    t2 = time.time()
    admin.disable("live")
    time.sleep(QUIET)
    late = [d for d in live_after(cluster, t2) if d > STOP]
    assert not late, f"disabled task still ran {late}s after disable() (bound {STOP}s)"
    assert [m for m in cluster.markers(label="control") if m.time > t2 + STOP], \
        "the control task stopped too: beat is not running"
    assert not admin.get("live").enabled

    # enable again: it runs again within the bound.
    t3 = time.time()
    admin.enable("live")
    delay = first_after(cluster, t3, "v2", timeout=APPEAR + 10)
    assert delay <= APPEAR, f"re-enabled task first ran {delay:.2f}s after enable() " \
                            f"(bound {APPEAR}s)"

    # remove: no run of it after STOP; its history stays.
    t4 = time.time()
    admin.remove("live")
    time.sleep(QUIET)
    late = [d for d in live_after(cluster, t4) if d > STOP]
    assert not late, f"removed task still ran {late}s after remove() (bound {STOP}s)"
    assert [m for m in cluster.markers(label="control") if m.time > t4 + STOP], \
        "the control task stopped too: beat is not running"
    with pytest.raises(TaskNotFound):
        admin.get("live")

    runs = admin.history("live", limit=1000)
    markers = cluster.markers(entry="live")
    assert runs and {r.task_id for r in runs} == {m.task_id for m in markers}
    assert not duplicates(m.task_id for m in cluster.markers())
    assert not duplicates(r.scheduled_at for r in runs)
    assert all(r.task_id == run_task_id("live", r.scheduled_at, r.attempt) for r in runs)
