"""What run tracking (``celery_beatx.track``) costs a worker per task.

Each task is executed the way a worker process executes it: through the tracer Celery
builds for the task (``celery.app.trace.build_tracer``, the function a prefork child or the
solo pool calls), with a request like a worker's (message headers, hostname, delivery info).
Three set-ups run the same no-op task N times in one process:

- ``untracked``: an app without ``track(app)`` (the baseline);
- ``other task``: a tracked app, a message without beat's ``beatx_run`` header (any task beat
  did not send);
- ``beat run``: a tracked app, a message of a run beat recorded (a ``pending`` row per task
  id): the conditional ``started`` update on the task path, the outcome queued and written by
  the background thread.

Figures per task, in microseconds: the median and p95 of the time inside the tracer (what
delays the task), and the whole process CPU time (all threads, outcome writes included,
measured until the queue is flushed) divided by N.  "added" is the difference to the
untracked baseline.

    .venv/bin/python benchmarks/bench_tracking.py                       # N=2000, 3 databases
    .venv/bin/python benchmarks/bench_tracking.py --tasks 500 --db sqlite

No timing is asserted; the figures are printed (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

UTC = timezone.utc
SERVERS = {
    "postgresql": os.environ.get("BEATX_BENCH_PG",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("BEATX_BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


def fresh_db(kind: str, tmp: str) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.sqlite3", None
    name = f"beatx_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return sa.engine.make_url(SERVERS[kind]).set(database=name).render_as_string(False), \
        (admin, name, kind)


def drop_db(handle: Any) -> None:
    if handle is None:
        return
    admin, name, kind = handle
    with admin.connect() as conn:
        if kind == "postgresql":
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def make_app(url: str, tracked: bool) -> Any:
    from celery import Celery

    import celery_beatx

    app = Celery(f"bench-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(beatx_database_url=url, broker_url="memory://")
    if tracked:
        celery_beatx.track(app)

    @app.task(name="bench.noop", shared=False, ignore_result=True)
    def noop() -> None:
        return None

    app.finalize()
    return app


def queue_runs(url: str, n: int) -> list[dict[str, Any]]:
    """``n`` pending runs, as beat records them; returns their ``beatx_run`` headers."""
    from celery_beatx import BeatAdmin, every
    from celery_beatx.beat.dispatch import run_task_id

    admin = BeatAdmin(url=url)
    admin.add("noop", "bench.noop", every(hours=1))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows, headers = [], []
    for i in range(n):
        when = start + timedelta(seconds=i)
        task_id = run_task_id("noop", when, 0)
        rows.append({"task_name": "noop", "task_id": task_id, "scheduled_at": when,
                     "attempt": 0, "status": "sent", "kind": "scheduled", "token": None,
                     "reason": None, "instance_id": "bench", "created_at": when,
                     "sent_at": when, "duplicates": 0})
        headers.append({"id": task_id, "beatx_run": {
            "name": "noop", "scheduled_at": when.isoformat(), "attempt": 0,
            "kind": "scheduled"}})
    with admin._tx() as session:
        admin.repo.add_runs(session, rows)
    admin.engine.dispose()
    return headers


def measure(app: Any, messages: list[dict[str, Any]]) -> dict[str, float]:
    """Run the task once per message through the worker's tracer."""
    from celery.app.trace import build_tracer

    task = app.tasks["bench.noop"]
    tracer = build_tracer(task.name, task, app=app, hostname="bench@host")
    tracker = getattr(app, "_beatx_tracker", None)
    # Warm-up: settings read, engine and schema check done, threads started.
    if tracker is not None:
        tracker.warm()
    for message in messages[:20]:
        tracer(message["id"], (), {}, request(message))
    if tracker is not None:
        tracker.flush(30)
    timed = messages[20:]
    gc.collect()
    laps: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for message in timed:
        began = time.perf_counter()
        tracer(message["id"], (), {}, request(message))
        laps.append(time.perf_counter() - began)
    path = time.perf_counter() - wall0
    if tracker is not None and not tracker.flush(120):
        raise RuntimeError("outcomes were not written within 120 s")
    cpu = time.process_time() - cpu0
    if tracker is not None:
        tracker.close()
    laps.sort()
    n = len(timed)
    return {"n": n, "median_us": statistics.median(laps) * 1e6,
            "p95_us": laps[int(0.95 * (n - 1))] * 1e6, "path_us": path / n * 1e6,
            "cpu_us": cpu / n * 1e6, "all_written_s": time.perf_counter() - wall0}


def request(message: dict[str, Any]) -> dict[str, Any]:
    out = {"id": message["id"], "task": "bench.noop", "hostname": "bench@host",
           "delivery_info": {"exchange": "", "routing_key": "celery", "redelivered": False},
           "retries": 0, "is_eager": False, "headers": None}
    if "beatx_run" in message:
        out["beatx_run"] = message["beatx_run"]
    return out


def check_written(url: str, n: int) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        done = conn.execute(sa.text(
            "SELECT COUNT(*) FROM beatx_runs WHERE status = 'succeeded'")).scalar_one()
    engine.dispose()
    return int(done)


def bench_db(kind: str, n: int, tmp: str) -> dict[str, Any]:
    url, handle = fresh_db(kind, tmp)
    try:
        headers = queue_runs(url, n + 20)
        plain = [{"id": str(uuid.uuid4())} for _ in range(n + 20)]
        results = {
            "untracked": measure(make_app(url, tracked=False), plain),
            "other task": measure(make_app(url, tracked=True), plain),
            "beat run": measure(make_app(url, tracked=True), headers),
        }
        results["beat run"]["succeeded_rows"] = check_written(url, n)
        return results
    finally:
        drop_db(handle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--db", default="sqlite,postgresql,mariadb")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"tasks": args.tasks, "python": sys.version.split()[0],
                           "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db.split(","):
            out["results"][kind] = bench_db(kind, args.tasks, tmp)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"run tracking cost per task, N={args.tasks} (microseconds)")
    print(f"{'database':<11} {'set-up':<11} {'median':>8} {'p95':>8} {'cpu/task':>9} "
          f"{'added (median / cpu)':>22}")
    for kind, results in out["results"].items():
        base = results["untracked"]
        for name, r in results.items():
            added = "" if name == "untracked" else \
                f"{r['median_us'] - base['median_us']:+.0f} / {r['cpu_us'] - base['cpu_us']:+.0f}"
            print(f"{kind:<11} {name:<11} {r['median_us']:8.0f} {r['p95_us']:8.0f} "
                  f"{r['cpu_us']:9.0f} {added:>22}")
        written = results["beat run"]["succeeded_rows"]
        print(f"{kind:<11} outcome rows written: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
