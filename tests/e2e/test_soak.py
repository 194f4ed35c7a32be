"""Soak: a real beat and worker run ~50 fast interval tasks, with a beat restart halfway.

Two lengths of the same test:

- ``short`` (20 s) runs with the rest of the suite (``make test``);
- ``long`` (10 min, or ``BEATX_SOAK_SECONDS``) is marked ``soak``: only ``make soak`` runs it.

Broker and database default to Redis + PostgreSQL (``BEATX_SOAK_BROKER`` = ``redis`` /
``rabbitmq``, ``BEATX_SOAK_DB`` = ``sqlite`` / ``postgresql`` / ``mariadb``).

What must hold at the end: no task id ran twice, no scheduled time of a task was sent twice,
every ``beatx_runs`` row was executed by the worker (and nothing else was), runs of a task are
never closer than its interval, and every task ran about ``uptime / interval`` times (the
restart costs the downtime and adds at most one catch-up run per task).  The restart's
SIGTERM is sent on purpose while beat records and sends a batch of ~34 due tasks: a clean
stop must finish (or not start) that batch, never leave it half sent.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from harness import Cluster, Marker, Proc, duplicates

from celery_beatx import every
from celery_beatx.scheduler import run_task_id

pytestmark = [pytest.mark.e2e]

SHORT_SECONDS = 20.0
SOAK_SECONDS = float(os.environ.get("BEATX_SOAK_SECONDS", "600"))
BROKER = os.environ.get("BEATX_SOAK_BROKER", "redis")
DATABASE = os.environ.get("BEATX_SOAK_DB", "postgresql")
TASKS = 50
INTERVALS = (1.0, 1.5, 2.0)
#: Beat is down this long (plus its start-up time) in the middle: every task misses a run.
DOWNTIME = 2.0
#: When, after a batch is due, beat is stopped (while it records and sends the batch).
STOP_OFFSET = 0.03
#: A send later than this after its scheduled time counts as late (only a catch-up, or a run
#: recorded just before the SIGTERM and re-sent at the restart, may be).
LATE = 2.0


def interval_of(index: int) -> float:
    return INTERVALS[index % len(INTERVALS)]


def watch(procs: list[Proc], until: float) -> None:
    """Sleep until the wall-clock time ``until``, failing as soon as a process dies."""
    while (left := until - time.time()) > 0:
        for proc in procs:
            assert proc.running(), f"{proc.name} exited ({proc.popen.returncode}) during the soak"
        time.sleep(min(left, 1.0))


def drain(cluster: Cluster, recorded: set[str], stall: float = 15.0) -> list[Marker]:
    """The markers, once the worker ran every recorded send or made no progress for
    ``stall`` s (a worker behind beat may need a while to work off its backlog)."""
    count, progress = -1, time.monotonic()
    while True:
        markers = cluster.markers()
        if recorded <= {m.task_id for m in markers}:
            return markers
        if len(markers) != count:
            count, progress = len(markers), time.monotonic()
        elif time.monotonic() - progress > stall:
            return markers  # what did not run is reported by the caller
        time.sleep(0.2)


def stopped(beat: Proc, problems: list[str]) -> None:
    """SIGTERM ``beat``; a beat that does not exit cleanly (in time) is a problem."""
    took = time.time()
    status = beat.stop()
    took = time.time() - took
    if status != 0:
        problems.append(f"{beat.name} did not exit cleanly on SIGTERM: status {status} "
                        f"after {took:.1f}s")


@pytest.mark.parametrize("duration", [
    pytest.param(SHORT_SECONDS, id="short", marks=pytest.mark.timeout(SHORT_SECONDS + 100)),
    pytest.param(SOAK_SECONDS, id="long",
                 marks=[pytest.mark.soak, pytest.mark.timeout(SOAK_SECONDS * 1.5 + 200)]),
])
def test_soak_many_fast_tasks_with_a_beat_restart(make_cluster, admin_for, duration):
    # Keep every run in the history, however long the soak.
    keep = str(int(duration / min(INTERVALS)) + 100)
    cluster: Cluster = make_cluster(BROKER, DATABASE, extra_env={"E2E_HISTORY_KEEP": keep})
    admin = admin_for(cluster)
    worker = cluster.start_worker()
    beat = cluster.start_beat()

    names = [f"soak{i:02d}" for i in range(TASKS)]
    interval = {name: interval_of(i) for i, name in enumerate(names)}
    before_add = time.time()
    admin.add_many([{"name": name, "task": "e2eapp.mark", "schedule": every(seconds=step),
                     "args": [name]} for name, step in interval.items()])
    added = time.time()

    # Every task's first run is one interval after add_many's clock: one grid for all.
    origin = admin.get(names[0]).next_run_at.timestamp() - interval[names[0]]
    # First half, then SIGTERM, a few seconds down, start again, second half.  The SIGTERM
    # is sent just after a whole number of seconds since the tasks were added, while beat
    # sends the batch due then (every 1 s and 2 s task): a clean stop must neither lose nor
    # double a run of the batch it is sending.
    problems: list[str] = []
    watch([worker, beat], origin + 2 * math.ceil(duration / 4) + STOP_OFFSET)
    stop1 = time.time()
    stopped(beat, problems)
    exit1 = time.time()
    watch([worker], exit1 + DOWNTIME)
    start2 = time.time()
    beat = cluster.start_beat()
    loaded2 = time.time()
    watch([worker, beat], added + duration)
    stop2 = time.time()
    stopped(beat, problems)
    exit2 = time.time()
    print(f"soak {duration:.0f}s on {BROKER}+{DATABASE}: beat #1 up {stop1 - added:.1f}s, "
          f"down {loaded2 - exit1:.1f}s (start-up {loaded2 - start2:.1f}s), "
          f"beat #2 up {stop2 - loaded2:.1f}s")

    history = {name: sorted(admin.history(name, limit=10**7), key=lambda r: r.scheduled_at)
               for name in names}
    runs = [r for rs in history.values() for r in rs]
    recorded = {r.task_id for r in runs}
    markers = drain(cluster, recorded)
    executed = {m.task_id for m in markers}
    print(f"{len(runs)} runs recorded, {len(markers)} executed")

    # No task id twice, neither executed nor recorded; beatx_runs holds nothing else.
    twice = duplicates(m.task_id for m in markers)
    if twice:
        problems.append(f"{len(twice)} task id(s) executed twice: {twice[:3]}")
    if duplicates(r.task_id for r in runs):
        problems.append(f"task ids recorded twice: {duplicates(r.task_id for r in runs)[:3]}")
    with admin.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT COUNT(*) FROM beatx_runs")).scalar_one()
    if rows != len(runs):
        problems.append(f"beatx_runs has {rows} rows, the soak tasks' histories {len(runs)}")
    # Every recorded send ran, and nothing ran that was not recorded.
    missing = [r for r in runs if r.task_id not in executed]
    if missing:
        statuses = Counter(r.status for r in missing)
        problems.append(f"{len(missing)} recorded run(s) never executed (by status: "
                        f"{dict(statuses)}), e.g. {missing[:2]}")
    unknown = executed - recorded
    if unknown:
        problems.append(f"{len(unknown)} executed task id(s) not in beatx_runs: "
                        f"{sorted(unknown)[:3]}")
    by_id = {m.task_id: m for m in markers}

    lateness: list[float] = []
    latency: list[float] = []
    for name in names:
        step = interval[name]
        rs = history[name]
        info = admin.get(name)
        if info.total_run_count != len(rs):
            problems.append(f"{name}: total_run_count {info.total_run_count} != {len(rs)} runs")
        times = [r.scheduled_at for r in rs]
        # No scheduled time sent twice (recorded or executed).
        if duplicates(times) or duplicates(m.scheduled_at for m in markers if m.entry == name):
            problems.append(f"{name}: a scheduled time was sent twice")
        for run in rs:
            marker = by_id.get(run.task_id)
            if marker is None:
                continue  # reported above
            if run.task_id != run_task_id(name, run.scheduled_at, run.attempt) or \
                    (marker.entry, marker.scheduled_at, marker.label) != \
                    (name, run.scheduled_at, name):
                problems.append(f"{name}: run {run} does not match its marker {marker}")
            if run.status not in ("sent", "started", "succeeded"):
                problems.append(f"{name}: run {run.task_id} is {run.status}")
            if run.sent_at is not None:
                lateness.append((run.sent_at - run.scheduled_at).total_seconds())
            latency.append(marker.time - run.scheduled_at.timestamp())
        # Never two runs closer than the interval.
        close = [(a, b) for a, b in zip(times, times[1:]) if b - a < timedelta(seconds=step)]
        if close:
            problems.append(f"{name}: runs closer than {step}s: {close[:3]}")
        # Beat #1 sends the grid points in (added, its exit]; beat #2 one catch-up at its
        # start, then the grid points from there.  One run of slack each way, plus 1% for
        # the long soak on a busy machine.
        high = (math.floor((exit1 - before_add) / step)
                + 1 + math.floor((exit2 - start2) / step))
        low = (math.floor((stop1 - added) / step) - 1
               + math.floor((stop2 - loaded2 - 0.5) / step))
        slack = 1 + int(0.01 * high)
        if not low - slack <= len(rs) <= high + slack:
            problems.append(f"{name} (every {step}s): {len(rs)} runs, expected "
                            f"{low}..{high} (+-{slack})")
        late = [r for r in rs if r.sent_at is not None
                and r.sent_at - r.scheduled_at > timedelta(seconds=LATE)]
        # At the restart: the catch-up run, plus at most one run that the SIGTERM caught
        # recorded but not yet published (beat re-sends it at start: nothing is lost).
        if len(late) > 2 + int(duration / 300):
            problems.append(f"{name}: {len(late)} runs sent more than {LATE}s late: "
                            f"{[(r.scheduled_at, r.sent_at) for r in late[:3]]}")
    if latency:
        quantiles = statistics.quantiles(latency, n=100)
        print(f"send lateness max {max(lateness, default=0):.2f}s; worker latency p50 "
              f"{quantiles[49]:.3f}s p99 {quantiles[98]:.3f}s max {max(latency):.2f}s")
    assert not problems, "\n".join(problems[:20])
