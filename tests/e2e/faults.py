"""What the fault tests share: bursts of 1 s tasks, the run rows, and the delivery checks.

A fault test adds :data:`TASKS` tasks that run every second with ``catchup="all"`` (every
occurrence missed during an outage is still sent, at its own scheduled time), injects its
fault, stops beat cleanly, lets the worker drain, and then checks with
:func:`delivery_problems` what issue 6 asks of every fault:

- no occurrence lost: every scheduled second of every task, from its first run to the
  end, has a run row and was executed (a marker);
- no occurrence executed under two different task ids;
- same-id duplicate executions within a bound (``beatx_max_in_flight`` per crash);
- every run row final (none left ``pending``), every executed id recorded, and each task's
  ``total_run_count`` equal to its number of run rows.

Run rows are read straight from ``beatx_runs`` (with their ``instance_id``), with a
connection pool of none, so a read after a database restart does not meet a dead
connection.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from harness import Cluster, Marker, Proc

#: How many tasks fire together each second (issue 6: "50 tasks every 1 s").
TASKS = 50
STEP = timedelta(seconds=1)
#: Run rows in one of these states will never reach the worker: not a loss in themselves
#: (their occurrence must still be delivered under another attempt).
UNSENT = frozenset({"send_failed", "skipped"})


@dataclass(frozen=True)
class RunRow:
    """One ``beatx_runs`` row."""

    task_name: str
    task_id: str
    scheduled_at: datetime
    attempt: int
    status: str
    instance_id: str | None
    created_at: datetime
    sent_at: datetime | None


@contextmanager
def engine_for(url: str) -> Iterator[Any]:
    """An engine without a pool (no connection outlives one use), disposed afterwards."""
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def read_runs(url: str) -> list[RunRow]:
    """Every ``beatx_runs`` row, oldest scheduled time first."""
    from celery_beatx.store.models import Run

    columns = [Run.task_name, Run.task_id, Run.scheduled_at, Run.attempt, Run.status,
               Run.instance_id, Run.created_at, Run.sent_at]
    with engine_for(url) as engine, engine.connect() as conn:
        rows = conn.execute(sa.select(*columns).order_by(Run.scheduled_at, Run.id)).all()
    return [RunRow(*row) for row in rows]


def run_counts(url: str) -> dict[str, int]:
    """``total_run_count`` of every task."""
    from celery_beatx.store.models import Task

    with engine_for(url) as engine, engine.connect() as conn:
        return dict(conn.execute(sa.select(Task.name, Task.total_run_count)).all())


def read_lease(url: str) -> dict[str, Any] | None:
    """The ``beatx:leader`` row of ``beatx_locks`` (every column), or None."""
    with engine_for(url) as engine, engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM beatx_locks WHERE name = 'beatx:leader'")
                           ).mappings().first()
    return dict(row) if row is not None else None


def lease_owner(url: str) -> str | None:
    row = read_lease(url)
    return None if row is None else row.get("owner")


def add_tasks(admin: Any, prefix: str, count: int = TASKS, **fields: Any
              ) -> tuple[list[str], dict[str, datetime], float]:
    """Add ``count`` tasks running ``e2eapp.mark`` every second (``catchup="all"``).

    Returns their names, each one's first scheduled time, and the grid's origin: bursts
    are due at ``origin + k`` seconds (one ``add_many`` clock for all).
    """
    from celery_beatx import every

    names = [f"{prefix}{i:02d}" for i in range(count)]
    spec = {"catchup": "all", **fields}
    admin.add_many([{"name": name, "task": "e2eapp.mark", "schedule": every(seconds=1),
                     "args": [name], **spec} for name in names])
    first = {info.name: info.next_run_at for info in admin.list() if info.name in names}
    assert len(first) == count and all(first.values()), first
    origin = first[names[0]].timestamp() % 1.0
    return names, first, origin


def next_burst(origin: float, after: float, offset: float = 0.0) -> float:
    """The first time ``>= after`` that is ``offset`` s into a burst (``origin + k``)."""
    k = math.ceil(after - origin - offset)
    return origin + k + offset


def watch(procs: Sequence[Proc], until: float) -> None:
    """Sleep until the wall-clock time ``until``, failing as soon as a process dies."""
    while True:
        for proc in procs:
            assert proc.running(), (f"{proc.name} exited ({proc.popen.returncode}) "
                                    f"during the test")
        left = until - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def wait_caught_up(url: str, procs: Sequence[Proc], timeout: float) -> float | None:
    """Wait (failing if a process dies) until beat has sent its backlog: no run row is
    ``pending`` and the newest scheduled time is at most 2 s old.  Returns how long it
    took, or None when ``timeout`` s passed first."""
    started = time.time()
    query = sa.text("SELECT count(*) FILTER (WHERE status = 'pending'), max(scheduled_at) "
                    "FROM beatx_runs") if url.startswith("postgresql") else sa.text(
        "SELECT sum(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), max(scheduled_at) "
        "FROM beatx_runs")
    with engine_for(url) as engine:
        while time.time() - started < timeout:
            watch(procs, time.time() + 0.5)
            try:
                with engine.connect() as conn:
                    pending, newest = conn.execute(query).one()
            except sa.exc.OperationalError:
                continue
            if not pending and newest is not None:
                if isinstance(newest, str):
                    newest = datetime.fromisoformat(newest)
                if newest.tzinfo is None:
                    newest = newest.replace(tzinfo=timezone.utc)
                if newest.timestamp() >= time.time() - 2.0:
                    return time.time() - started
    return None


def seeded(name: str) -> random.Random:
    """A random generator whose seed is printed (``BEATX_FAULT_SEED`` replays a run)."""
    import os

    seed = int(os.environ.get("BEATX_FAULT_SEED") or random.SystemRandom().randrange(10**9))
    print(f"{name}: BEATX_FAULT_SEED={seed}")
    return random.Random(seed)


def drain(cluster: Cluster, runs: Iterable[RunRow], stall: float = 30.0,
          timeout: float = 180.0) -> list[Marker]:
    """The markers, once the worker executed every sent run, made no progress for
    ``stall`` s, or ``timeout`` s passed (what did not run is reported by the checks)."""
    wanted = {r.task_id for r in runs if r.status not in UNSENT}
    deadline = time.monotonic() + timeout
    count, progress = -1, time.monotonic()
    while True:
        markers = cluster.markers()
        now = time.monotonic()
        if wanted <= {m.task_id for m in markers} or now > deadline:
            return markers
        if len(markers) != count:
            count, progress = len(markers), now
        elif now - progress > stall:
            return markers
        time.sleep(0.2)


def by_instance(runs: Iterable[RunRow]) -> dict[str | None, list[RunRow]]:
    out: dict[str | None, list[RunRow]] = defaultdict(list)
    for run in runs:
        out[run.instance_id].append(run)
    return out


def first_send_after(runs: Iterable[RunRow], moment: float) -> float | None:
    """The earliest ``sent_at`` at or after the wall-clock time ``moment`` (None: none)."""
    times = [r.sent_at.timestamp() for r in runs
             if r.sent_at is not None and r.sent_at.timestamp() >= moment]
    return min(times, default=None)


def _sample(items: Iterable[Any], n: int = 3) -> list[Any]:
    return sorted(items, key=str)[:n]


def delivery_problems(names: Sequence[str], first: dict[str, datetime],
                      runs: Sequence[RunRow], markers: Sequence[Marker],
                      counts: dict[str, int], until: float, duplicate_bound: int,
                      per_instance_bound: int | None = None,
                      in_broker: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Everything that breaks issue 6's delivery promise (see the module docstring).

    ``until``: the wall-clock time up to which every task must have kept running (its last
    scheduled time at most 2 s before it); ``duplicate_bound``: how many extra executions
    of an already executed task id are allowed in total; ``per_instance_bound``: how many
    of them the runs recorded by any one beat instance may have (one crash each, when
    every crashed beat had an instance id of its own); ``in_broker``: task ids whose
    message the broker still holds, unacknowledged (see :func:`unacked_ids`).
    """
    problems: list[str] = []
    wanted = set(names)
    runs = [r for r in runs if r.task_name in wanted]
    markers = [m for m in markers if m.entry in wanted]
    executed = Counter(m.task_id for m in markers)
    recorded = {r.task_id for r in runs}

    pending = [r for r in runs if r.status == "pending"]
    if pending:
        problems.append(f"{len(pending)} run row(s) left pending, e.g. {_sample(pending, 2)}")
    unknown = set(executed) - recorded
    if unknown:
        problems.append(f"{len(unknown)} executed task id(s) have no run row: "
                        f"{_sample(unknown)}")
    extra = sum(n - 1 for n in executed.values())
    if extra > duplicate_bound:
        twice = [tid for tid, n in executed.items() if n > 1]
        problems.append(f"{extra} duplicate execution(s) of {len(twice)} task id(s), more "
                        f"than the bound {duplicate_bound}: {_sample(twice)}")
    if per_instance_bound is not None:
        recorder = {r.task_id: r.instance_id for r in runs}
        per_instance: Counter[str | None] = Counter()
        for tid, n in executed.items():
            per_instance[recorder.get(tid)] += n - 1
        over = {inst: n for inst, n in per_instance.items() if n > per_instance_bound}
        if over:
            problems.append(f"duplicate executions of the runs one beat recorded exceed the "
                            f"in-flight bound {per_instance_bound} (instance: extra "
                            f"executions): {dict(sorted(over.items(), key=str))}")
    # Occurrences executed under more than one task id.
    ids: dict[tuple[str | None, datetime | None], set[str]] = defaultdict(set)
    for marker in markers:
        ids[(marker.entry, marker.scheduled_at)].add(marker.task_id)
    doubled = [key for key, tids in ids.items() if len(tids) > 1]
    if doubled:
        problems.append(f"{len(doubled)} occurrence(s) executed under two or more task ids: "
                        f"{_sample(doubled)}")
    rows_of: dict[str, list[RunRow]] = defaultdict(list)
    for run in runs:
        rows_of[run.task_name].append(run)
    ran_at: dict[str, set[datetime]] = defaultdict(set)
    for marker in markers:
        if marker.entry is not None and marker.scheduled_at is not None:
            ran_at[marker.entry].add(marker.scheduled_at)
    # Delivered to a worker that lost it with its connection when the broker died: the
    # message is still the broker's (restored after its visibility timeout), not lost.
    for run in runs:
        if run.task_id in in_broker:
            ran_at[run.task_name].add(run.scheduled_at)

    lost_rows, lost_runs, off_grid, stopped_early, miscounted = [], [], [], [], []
    for name in names:
        rows = rows_of.get(name, [])
        if counts.get(name) != len(rows):
            miscounted.append((name, counts.get(name), len(rows)))
        start = first[name]
        recorded_at = {r.scheduled_at for r in rows}
        latest = max(recorded_at | ran_at[name], default=None)
        if latest is None or latest.timestamp() < until - 2.0:
            stopped_early.append((name, latest))
        if latest is None:
            continue
        expected = {start + k * STEP for k in range(int((latest - start) / STEP) + 1)}
        lost_rows += [(name, t) for t in expected - recorded_at]
        lost_runs += [(name, t) for t in expected - ran_at[name]]
        off_grid += [(name, t) for t in (recorded_at | ran_at[name]) - expected]
    if lost_rows:
        problems.append(f"{len(lost_rows)} scheduled occurrence(s) have no run row: "
                        f"{_sample(lost_rows)}")
    if lost_runs:
        problems.append(f"{len(lost_runs)} scheduled occurrence(s) were never executed: "
                        f"{_sample(lost_runs)}")
    if off_grid:
        problems.append(f"{len(off_grid)} run(s) off the tasks' 1 s grid (catchup='all' "
                        f"must send the missed occurrences themselves): {_sample(off_grid)}")
    if stopped_early:
        problems.append(f"{len(stopped_early)} task(s) stopped running before the end "
                        f"({datetime.fromtimestamp(until).isoformat()}): "
                        f"{_sample(stopped_early)}")
    if miscounted:
        problems.append(f"{len(miscounted)} task(s) whose total_run_count is not their "
                        f"number of run rows (name, count, rows): {_sample(miscounted)}")
    return problems


def summary(runs: Sequence[RunRow], markers: Sequence[Marker]) -> str:
    """One line for the test output: rows by status and by instance, executions."""
    statuses = Counter(r.status for r in runs)
    instances = Counter(r.instance_id for r in runs)
    return (f"{len(runs)} run rows {dict(statuses)}, by instance {dict(instances)}; "
            f"{len(markers)} executions of {len({m.task_id for m in markers})} task ids")


def unacked_ids(redis_url: str) -> set[str]:
    """Task ids of the messages a Redis broker holds as delivered and not acknowledged
    (kombu's ``unacked`` hash): a worker took them and lost them with its connection when
    the broker died; kombu gives them back after the visibility timeout (an hour)."""
    import json

    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        ids = set()
        for raw in client.hvals("unacked"):
            try:
                message = json.loads(raw)[0]
                ids.add(message["headers"]["id"])
            except (ValueError, LookupError, TypeError):
                continue
        return ids
    finally:
        client.close()
