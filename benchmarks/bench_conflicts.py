"""Cost of ``BeatAdmin.conflicts()`` on 10,000 tasks over one day.

Run: ``.venv/bin/python benchmarks/bench_conflicts.py`` (SQLite in a temporary directory;
``--url`` for another database, ``--tasks N`` for another size).  Prints the time of the
pure sweep (fire times computed, sorted and swept) and of the whole admin call (tasks read
from the database too), the number of fire times, and the conflicts found per severity.

The task mix is what a large deployment looks like: many copies of a few jobs (each copy
its own task, same schedule), hourly and daily crons at random minutes, intervals of hours
anchored at random, a few every-15/30-minute tasks, with jitter on some.
``tests/test_conflicts_bench.py`` runs this at 10,000 tasks and requires it to answer within
seconds.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

from celery_beatx import BeatAdmin, cron, every
from celery_beatx.conflicts import FireSource, find_conflicts

UTC = timezone.utc
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def task_specs(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` task specs (name, schedule, jitter) in the documented mix."""
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    for index in range(count):
        roll = rng.random()
        jitter = 0.0
        if roll < 0.30:  # copies of 20 tenant jobs: same cron per job
            job = rng.randrange(20)
            schedule: Any = cron(f"{(job * 7) % 60} {(job * 5) % 24} * * *")
        elif roll < 0.55:  # hourly at a random minute
            schedule = cron(f"{rng.randrange(60)} * * * *")
        elif roll < 0.80:  # daily at a random time
            schedule = cron(f"{rng.randrange(60)} {rng.randrange(24)} * * *")
            jitter = 300.0 if rng.random() < 0.2 else 0.0
        elif roll < 0.97:  # every 1-12 hours, anchored at a random second
            schedule = every(hours=rng.choice((1, 2, 3, 4, 6, 12)),
                             anchor=START + timedelta(seconds=rng.randrange(3600)))
        else:  # every 15 or 30 minutes
            schedule = every(minutes=rng.choice((15, 30)),
                             anchor=START + timedelta(seconds=rng.randrange(900)))
        specs.append({"name": f"task-{index:05d}", "schedule": schedule, "jitter": jitter})
    return specs


def pure(specs: list[dict[str, Any]], window: float) -> tuple[float, int, list[Any]]:
    started = time.perf_counter()
    sources = [FireSource(s["name"], s["schedule"], s["schedule"].next_after(START, None),
                          None, s["jitter"]) for s in specs]
    found = find_conflicts(sources, window=window, start=START, horizon=timedelta(days=1))
    return time.perf_counter() - started, len(sources), found


def through_admin(specs: list[dict[str, Any]], url: str | None, window: float
                  ) -> tuple[float, float, list[Any]]:
    """Store the tasks, then time ``conflicts()`` (reading them back included)."""
    with tempfile.TemporaryDirectory() as tmp:
        admin = BeatAdmin(url=url or f"sqlite:///{tmp}/bench.sqlite3", clock=lambda: START)
        started = time.perf_counter()
        for start in range(0, len(specs), 1000):
            admin.add_many([{"name": s["name"], "task": "bench.noop",
                             "schedule": s["schedule"], "jitter": s["jitter"]}
                            for s in specs[start:start + 1000]])
        stored = time.perf_counter() - started
        started = time.perf_counter()
        found = admin.conflicts(window=window, now=START)
        elapsed = time.perf_counter() - started
        if url:
            admin.remove_many([s["name"] for s in specs])
        admin.engine.dispose()
    return stored, elapsed, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--url", default=None)
    parser.add_argument("--pure-only", action="store_true")
    args = parser.parse_args()
    specs = task_specs(args.tasks)
    seconds, sources, found = pure(specs, args.window)
    print(f"{args.tasks} tasks, window {args.window:g} s, horizon 1 day")
    print(f"pure sweep: {seconds:.2f} s, {len(found)} conflicts "
          f"{dict(Counter(c.severity for c in found))}")
    if not args.pure_only:
        stored, elapsed, found = through_admin(specs, args.url, args.window)
        print(f"stored in {stored:.1f} s; BeatAdmin.conflicts(): {elapsed:.2f} s, "
              f"{len(found)} conflicts")


if __name__ == "__main__":
    main()
