"""CPU instructions beat spends per send, counted by valgrind (callgrind), not timed.

Sends per second move with whatever else the machine is doing (a plain Python loop took
0.34-0.74 s on this project's machines from one hour to the next); the instructions the
beat process executes for the same burst do not.  This runs a burst of ``K`` due tasks
through ``celery_beatx.Scheduler`` (real database, real broker, run state written) twice,
with ``--small`` and ``--large`` tasks due, each in a fresh process under
``valgrind --tool=callgrind``, and reports ``(I(large) - I(small)) / (large - small)``: the
instructions of one more send, start-up and imports cancelled out.  The database server
and the broker are other processes: they are not counted.

    .venv/bin/python benchmarks/bench_send_instructions.py --store sqlite
    .venv/bin/python benchmarks/bench_send_instructions.py --store postgresql \\
        --broker amqp://guest:guest@127.0.0.1:5672//

To compare two checkouts, run it with ``PYTHONPATH=<other checkout>`` (the child processes
inherit it).  About a minute per 1,000 sends under valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
QUEUE = "beatx-bench-instructions"


def setup(url: str, due: int) -> None:
    """1,000 tasks not due (half hourly, half daily) and ``due`` tasks due at once."""
    from celery_beatx import crontab, every
    from celery_beatx.admin import BeatAdmin

    admin = BeatAdmin(url=url)
    admin.add_many([{"name": f"base-{i:05d}", "task": "bench.noop", "args": [i],
                     "schedule": every(hours=1) if i % 2 else crontab(minute="0", hour="3")}
                    for i in range(1000)])
    admin.engine.dispose()
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    earlier = BeatAdmin(url=url, clock=lambda: past)
    if due:
        earlier.add_many([{"name": f"due-{j:06d}", "task": "bench.noop", "args": [j],
                           "schedule": every(hours=1)} for j in range(due)])
    earlier.engine.dispose()


def burst(url: str, broker: str, due: int) -> None:
    """Start beat and tick until the ``due`` runs are marked sent."""
    import sqlalchemy as sa
    from celery import Celery
    from kombu import Connection, Queue

    import celery_beatx.scheduler as beatx_scheduler
    from celery_beatx.scheduler import Scheduler

    # Chores that come at wall-clock intervals (the change poll, the heartbeat and lease
    # renewal, the recovery and stuck-run scans) would come about fifty times as often per
    # send under valgrind as in a real burst: they are put after the burst, so that what is
    # counted is the sends.
    beatx_scheduler.RECOVER_EVERY = 1e9
    app = Celery("bench_instructions", broker=broker, set_as_current=True)
    app.conf.update(timezone="UTC", enable_utc=True, task_default_queue=QUEUE,
                    beatx_database_url=url, beatx_sync_interval=3600.0,
                    beatx_lease_seconds=4 * 3600.0)
    beat = Scheduler(app, lazy=False)
    sent = 0
    try:
        for tick in range(1000):
            beat.tick()
            with beat.engine.connect() as conn:
                sent = conn.execute(sa.text(
                    "SELECT count(*) FROM beatx_runs WHERE status = 'sent'")).scalar() or 0
            if sent >= due and tick >= 3:
                break
    finally:
        beat.close()
        with Connection(broker) as conn:
            channel = conn.channel()
            Queue(QUEUE)(channel).delete()
            channel.close()
    if sent != due:
        raise SystemExit(f"{sent} runs marked sent, {due} expected")


def counted(url: str, broker: str, due: int) -> int:
    """Instructions of one burst process under callgrind."""
    here = os.path.abspath(__file__)
    subprocess.run([sys.executable, here, "--child", "setup", "--url", url,
                    "--due", str(due)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, here, "--child", "burst", "--url", url, "--broker", broker,
             "--due", str(due)], capture_output=True, text=True, check=True)
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
    if not found:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def fresh_store(store: str, tmp: str) -> tuple[str, str | None]:
    """A URL of an empty database, and the PostgreSQL database to drop afterwards."""
    if store == "sqlite":
        return f"sqlite:///{tmp}/{uuid.uuid4().hex[:8]}.sqlite3", None
    import sqlalchemy as sa

    name = f"beatx_instr_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return f"{PG}/{name}", name


def drop_store(name: str | None) -> None:
    if name is None:
        return
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG}/test", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--small", type=int, default=1000, help="tasks due in the first run")
    parser.add_argument("--large", type=int, default=2000, help="tasks due in the second run")
    parser.add_argument("--child", choices=("setup", "burst"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--due", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "setup":
        setup(args.url, args.due)
        return 0
    if args.child == "burst":
        burst(args.url, args.broker, args.due)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    if args.large <= args.small:
        raise SystemExit("--large must be more than --small")
    started = time.perf_counter()
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for due in (args.small, args.large):
            url, name = fresh_store(args.store, tmp)
            try:
                counts[due] = counted(url, args.broker, due)
            finally:
                drop_store(name)
    per_send = (counts[args.large] - counts[args.small]) / (args.large - args.small)
    import celery_beatx

    print(f"celery-beatx from {os.path.dirname(celery_beatx.__file__)}")
    print(f"store {args.store}, broker {args.broker.split('://')[0]}")
    for due, count in counts.items():
        print(f"  {due:>6,} due: {count:>15,} instructions")
    print(f"instructions per send: {per_send:,.0f} "
          f"({time.perf_counter() - started:.0f} s under valgrind)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
