"""The in-flight window: throughput of beat's send path against ``beatx_max_in_flight``.

``beatx_max_in_flight`` bounds how many messages beat publishes between recording runs and
confirming them; it is also the most messages a ``kill -9`` can make the next leader send a
second time (with the same task ids).  A smaller window costs one confirm transaction per
window.  This measures that trade-off: K tasks due at once, sent by a real
``celery_beatx.Scheduler`` to a real Redis broker with run state written to SQLite or
PostgreSQL, for several window sizes.

    .venv/bin/python benchmarks/bench_in_flight.py                 # K=2000, SQLite + PostgreSQL
    .venv/bin/python benchmarks/bench_in_flight.py --due 500 --db sqlite

No timing is asserted anywhere; the figures are printed as a table (and as JSON with
``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

UTC = timezone.utc
REDIS = os.environ.get("BEATX_BENCH_REDIS", "redis://127.0.0.1:6379/6")
PG = os.environ.get("BEATX_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WINDOWS = (1, 10, 100, 500)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def fresh_db(kind: str, tmp: str) -> tuple[str, object]:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.sqlite3", None
    name = f"beatx_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return sa.engine.make_url(PG).set(database=name).render_as_string(False), (admin, name)


def drop_db(handle: object) -> None:
    if handle is None:
        return
    admin, name = handle  # type: ignore[misc]
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def run_once(db: str, due: int, window: int, tmp: str) -> dict[str, float]:
    from celery import Celery
    from kombu import Connection

    from celery_beatx import BeatAdmin, every
    from celery_beatx.scheduler import Scheduler

    url, handle = fresh_db(db, tmp)
    queue = f"beatx-bench-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    try:
        admin = BeatAdmin(url=url, clock=clock)
        admin.add_many([{"name": f"t{i:05d}", "task": "bench.noop",
                         "schedule": every(seconds=60)} for i in range(due)])
        app = Celery("bench", broker=REDIS, set_as_current=False)
        app.conf.update(beatx_database_url=url, task_default_queue=queue,
                        beatx_max_in_flight=window, result_expires=None,
                        beatx_lease_seconds=60)
        beat = Scheduler(app, clock=clock)
        beat.tick()
        clock.now += timedelta(seconds=60)
        start = time.perf_counter()
        while True:
            beat.tick()
            nxt = beat._heap_slots.next_fire()
            if (nxt is None or nxt > clock.now.timestamp()) and not beat.dispatcher.unsent:
                break
        elapsed = time.perf_counter() - start
        beat.close()
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            sent = conn.execute(sa.text(
                "SELECT count(*) FROM beatx_runs WHERE status = 'sent'")).scalar()
        engine.dispose()
        admin.engine.dispose()
        with Connection(REDIS) as conn:
            conn.SimpleQueue(queue).queue.delete()
        return {"seconds": elapsed, "sent": sent, "per_second": sent / elapsed}
    finally:
        drop_db(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--due", type=int, default=2000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("celery_beatx").setLevel(logging.ERROR)  # leadership and clock notes
    results: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for db in args.db.split(","):
            results[db] = {}
            for window in WINDOWS:
                rates = [run_once(db, args.due, window, tmp) for _ in range(args.repeats)]
                results[db][window] = {
                    "sends_per_second": statistics.median(r["per_second"] for r in rates),
                    "sent": rates[0]["sent"],
                }
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(f"{args.due} tasks due at once -> Redis; median of {args.repeats}; run state written")
    print(f"{'database':<11}{'max_in_flight':>14}{'sends/s':>10}{'vs 100':>8}"
          f"{'kill -9 duplicates at most':>28}")
    for db, by_window in results.items():
        base = by_window[100]["sends_per_second"]
        for window, figure in by_window.items():
            rate = figure["sends_per_second"]
            print(f"{db:<11}{window:>14}{rate:>10.0f}{rate / base:>8.2f}{window:>28}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
