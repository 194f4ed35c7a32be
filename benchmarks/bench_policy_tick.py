"""Beat's tick with outcome policies in play (issue 8's speed figure).

10,000 stored tasks, of which 1,000 depend on another task and 1,000 have an overlap rule
(``skip``); none is due during the measurement.  Figures, per database:

- ``idle tick``: median and p95 of ``Scheduler.tick()`` when nothing is due (the common case);
- ``watch tick``: median and p95 of a tick that also runs the per-sync-interval work (the
  follow-ups pass over retries, buffered and blocked runs, and the alert rules).

    .venv/bin/python benchmarks/bench_policy_tick.py                  # SQLite and PostgreSQL
    .venv/bin/python benchmarks/bench_policy_tick.py --db sqlite --tasks 2000

Worker-side tracking cost is measured by ``bench_tracking.py``.  No timing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone

from bench_in_flight import drop_db, fresh_db

UTC = timezone.utc


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def measure(db: str, tasks: int, tmp: str, samples: int) -> dict[str, float]:
    from celery import Celery

    import celery_beatx
    from celery_beatx import BeatAdmin, every
    from celery_beatx.scheduler import Scheduler

    url, handle = fresh_db(db, tmp)
    clock = Clock()
    try:
        admin = BeatAdmin(url=url, clock=clock)
        specs = []
        for i in range(tasks):
            spec = {"name": f"t{i:05d}", "task": "bench.noop", "schedule": every(hours=1)}
            if i % 10 == 1:
                spec["depends_on"] = [f"t{i - 1:05d}"]
            elif i % 10 == 2:
                spec["overlap"] = "skip"
            specs.append(spec)
        app = Celery("bench", broker="memory://", set_as_current=False)
        app.conf.beatx_database_url = url
        celery_beatx.track(app)  # policies that read outcomes need tracking on
        for k in range(0, tasks, 10_000):
            admin.add_many(specs[k:k + 10_000])
        beat = Scheduler(app=app, clock=clock, lazy=False)
        try:
            beat.tick()
            idle, watch = [], []
            for _ in range(samples):
                t0 = time.perf_counter()
                beat.tick()
                idle.append(time.perf_counter() - t0)
            for _ in range(max(samples // 10, 5)):
                beat._last_poll = beat._last_followup = beat._last_alerts = float("-inf")
                t0 = time.perf_counter()
                beat.tick()
                watch.append(time.perf_counter() - t0)
        finally:
            beat.close()
        admin.engine.dispose()
    finally:
        drop_db(handle)

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1e3

    return {"db": db, "tasks": tasks, "idle_median_ms": statistics.median(idle) * 1e3,
            "idle_p95_ms": pct(idle, 0.95), "watch_median_ms": statistics.median(watch) * 1e3,
            "watch_p95_ms": pct(watch, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for db in args.db.split(","):
            rows.append(measure(db, args.tasks, tmp, args.samples))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'database':<12}{'tasks':>8}{'idle median':>14}{'idle p95':>11}"
          f"{'watch median':>15}{'watch p95':>12}   (ms)")
    for r in rows:
        print(f"{r['db']:<12}{r['tasks']:>8}{r['idle_median_ms']:>14.3f}{r['idle_p95_ms']:>11.3f}"
              f"{r['watch_median_ms']:>15.2f}{r['watch_p95_ms']:>12.2f}")


if __name__ == "__main__":
    main()
