"""Custom Celery schedule classes and ``relative=True`` from ``beat_schedule``, sent by a real
beat (a subclass of our Scheduler given as ``-S module:Class``, overriding ``apply_entry``)
to a real worker, Redis + PostgreSQL:

- ``offset``: a ``celery.schedules.schedule`` subclass whose ``remaining_estimate`` adds 1 s
  to a 2 s interval: Celery runs it every 3 s;
- ``slot``: a ``BaseSchedule`` subclass with only ``is_due``: once at the start of each 4 s
  slot of the clock;
- ``relative``: 2.5 s with ``"relative": True``: Celery rounds each next run down to a whole
  second, so it runs every 2 s, on whole seconds;
- ``plain``: ``every(seconds=2)`` (one of our own schedules).

The ``apply_entry`` override must see every send, with the task id the worker ran.
"""

from __future__ import annotations

import json

import pytest
from harness import duplicates, wait_for

from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SCHEDULE = {
    "offset": {"offset": [2, 1]},
    "slot": {"slot": 4},
    "relative": {"relative": 2.5},
    "plain": {"every": 2},
}
#: A check is made when the object says; the send follows within this (a busy machine).
LATE = 0.35


def gaps(times: list) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip(times, times[1:])]


def test_custom_schedule_classes_fire_at_celerys_times(make_cluster, admin_for):
    cluster = make_cluster("redis", "postgresql", schedule=SCHEDULE)
    applied_path = cluster.workdir / "applied.jsonl"
    cluster.start_worker()
    beat = cluster.start_beat("e2eapp:RecordingScheduler", E2E_APPLIED=str(applied_path))
    assert "e2eapp.RecordingScheduler" in beat.output()
    admin = admin_for(cluster)
    described = admin.get("offset").schedule_dict
    assert described == {"type": "celery", "class": "e2eapp.OffsetSchedule",
                         "repr": "<every 2s + 1s>", "reason": "is a custom schedule class"}

    runs = {name: cluster.wait_markers(4, timeout=30, entry=name) for name in SCHEDULE}
    assert beat.stop() == 0

    offset = [m.scheduled_at for m in runs["offset"]]
    assert all(3 - LATE < g < 3 + LATE for g in gaps(offset)), gaps(offset)
    slot = [m.scheduled_at for m in runs["slot"]]
    assert [t.timestamp() // 4 for t in slot] == \
        [slot[0].timestamp() // 4 + k for k in range(len(slot))]  # one per slot, none missed
    assert all(t.timestamp() % 4 < LATE for t in slot), slot  # at the start of the slot
    relative = [m.scheduled_at for m in runs["relative"]]
    assert all(abs(g - 2) < LATE for g in gaps(relative)), gaps(relative)
    assert all(t.microsecond < LATE * 1e6 for t in relative), relative  # whole seconds
    plain = [m.scheduled_at for m in runs["plain"]]
    assert set(gaps(plain)) == {2.0}  # our own schedule: exact grid

    # Every send went through the apply_entry override, with the id the worker ran.
    history = {name: admin.history(name, limit=1000) for name in SCHEDULE}
    sent = {r.task_id for h in history.values() for r in h}
    wait_for(lambda: sent <= {m.task_id for m in cluster.markers()}, 15,
             "the worker to run every recorded send")
    applied = [json.loads(line) for line in applied_path.read_text().splitlines()]
    assert not duplicates(a["task_id"] for a in applied)
    assert {a["task_id"] for a in applied} == sent
    assert not duplicates(m.task_id for m in cluster.markers())
    for name, rows in history.items():
        assert admin.get(name).total_run_count == len(rows)
        for row in rows:
            assert row.status in ("sent", "started", "succeeded"), row
            assert row.task_id == run_task_id(name, row.scheduled_at, row.attempt)
    # The worker ran each promptly after the time beat recorded for it.
    for marker in cluster.markers():
        assert 0 <= marker.time - marker.scheduled_at.timestamp() < 2.5, marker
