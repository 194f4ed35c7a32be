"""Benchmark celery-beatx's scheduler against the beat schedulers people use today.

Run with ``make bench`` (or ``.venv/bin/python benchmarks/bench_scheduler.py``).  Options:

``--tasks N``   number of stored tasks (default 10000; 1000 with ``--quick``)
``--due K``     tasks due at once for the send figure (default 1000; 100 with ``--quick``)
``--quick``     smaller and shorter run, for a smoke test
``--systems``   comma-separated subset of: ours, celery, sqlalchemy, django, redbeat

Every scheduler runs in its own subprocess (``--worker NAME``), so Django settings,
sqlalchemy-celery-beat's module-level session manager and Celery's current app never meet.
A worker prints one ``BENCH_RESULT {json}`` line; the parent builds the table, prints it and
writes ``benchmarks/results-latest.json``.  A peer that cannot be measured is reported as
"not measured: <reason>"; no figure is ever invented.  There are no timing assertions.

See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UTC = timezone.utc
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results-latest.json"
MARKER = "BENCH_RESULT "
TASK = "bench.noop"
REDIS_URL = "redis://127.0.0.1:6379/7"

SYSTEMS = ("ours", "celery", "sqlalchemy", "django", "redbeat")
LABELS = {
    "ours": "celery-beatx Scheduler (SQLite)",
    "celery": "celery PersistentScheduler (shelve)",
    "sqlalchemy": "sqlalchemy-celery-beat DatabaseScheduler (SQLite)",
    "django": "django-celery-beat DatabaseScheduler (SQLite)",
    "redbeat": "RedBeatScheduler (Redis db 7)",
}
DISTRIBUTIONS = {
    "ours": "celery-beatx-sql",
    "celery": "celery",
    "sqlalchemy": "sqlalchemy-celery-beat",
    "django": "django-celery-beat",
    "redbeat": "celery-redbeat",
}
#: Seconds a worker may take before it is killed (a hung peer must not hang the run).
WORKER_TIMEOUT = {"ours": 300, "celery": 120, "sqlalchemy": 150, "django": 150, "redbeat": 120}


# -- helpers shared by the workers -------------------------------------------------------

def stats(samples: list[float]) -> dict[str, Any]:
    """Median, p99 (nearest rank), mean, min and max of ``samples`` (seconds)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, max(0, -(-99 * len(ordered) // 100) - 1))]
    return {"n": len(ordered), "median": statistics.median(ordered), "p99": p99,
            "mean": statistics.fmean(ordered), "min": ordered[0], "max": ordered[-1]}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return ``(seconds, result)``."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def tick_loop(tick: Callable[[], Any], budget: float, max_n: int,
              min_n: int = 30) -> tuple[list[float], list[Any]]:
    """Call ``tick`` repeatedly for about ``budget`` seconds; return durations and results."""
    gc.collect()
    durations: list[float] = []
    results: list[Any] = []
    clock = time.perf_counter
    deadline = clock() + budget
    while len(durations) < max_n and (clock() < deadline or len(durations) < min_n):
        start = clock()
        value = tick()
        durations.append(clock() - start)
        results.append(value)
    return durations, results


def measure_startups(start: Callable[[], tuple[dict[str, float], Any]], repeats: int,
                     out: dict[str, Any]) -> Any:
    """Time one cold start and ``repeats`` warm ones; return the last scheduler (open).

    ``start`` returns ``({"startup": seconds, ...}, scheduler)``.  Each closed scheduler is
    dropped before the next start, so the garbage collector never walks two schedules.
    """
    timings, sched = start()  # first start in this process: imports, schema, sync
    out["startup_cold"] = timings["startup"]
    sched.close()
    sched = None
    samples: dict[str, list[float]] = {}
    for i in range(repeats):
        timings, sched = start()
        for key, value in timings.items():
            samples.setdefault(key, []).append(value)
        if i < repeats - 1:
            sched.close()
            sched = None
    for key, values in samples.items():
        out[key] = statistics.median(values)
    out["startup_samples"] = samples["startup"]
    out["loaded"] = len(sched.schedule)
    return sched


def cron_hour() -> int:
    """An hour of day (UTC) about 12 h away, so no crontab task falls due during the run.

    It is also outside django-celery-beat's +/- 2 h loading window (and not its always-loaded
    hour 4), so that scheduler skips every crontab task at start-up: see the README.
    """
    hour = (datetime.now(UTC).hour + 12) % 24
    return 5 if hour == 4 else hour


def make_app(**conf: Any) -> Any:
    """A Celery app publishing to the in-memory broker (no server needed)."""
    from celery import Celery

    app = Celery("bench", broker="memory://", set_as_current=True)
    app.conf.update(timezone="UTC", enable_utc=True, **conf)
    return app


def task_name(i: int) -> str:
    return f"bench-{i:06d}"


def changed_name(i: int, n: int) -> str:
    """The task changed by the ``i``-th pick-up: spread out, always an interval task (odd)."""
    return task_name(2 * ((i * 7919 + 1) % max(n // 2, 1)) + 1)


def measure_peer_pickups(sched: Any, cfg: dict[str, Any], n: int, out: dict[str, Any],
                         change: Any) -> None:
    """Time the tick after each of ``cfg["peer_pickups"]`` one-task changes made by
    ``change(name, i)`` (which sets the task's args to ``[i]``)."""
    pickups = []
    for i in range(cfg["peer_pickups"]):
        name = changed_name(i, n)
        change(name, i)
        time.sleep(0.002)  # the change marker is a timestamp: keep it strictly increasing
        seconds, _ = timed(sched.tick)
        pickups.append(seconds)
        entry = sched.schedule.get(name)
        if entry is None or entry.args != [i]:
            out["notes"].append(f"pick-up: change {i} was not seen by the tick")
    out["pickup"] = stats(pickups)


# -- celery-beatx ----------------------------------------------------------------------------

def worker_ours(cfg: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import replace

    from sqlalchemy import func, select

    from celery_beatx import crontab, every
    from celery_beatx.admin import BeatAdmin
    from celery_beatx.scheduler import Scheduler
    from celery_beatx.store.models import Run

    n, k, hour = cfg["tasks"], cfg["due"], cfg["cron_hour"]
    base = os.path.join(cfg["workdir"], "ours", "celerybeat-schedule")
    os.makedirs(os.path.dirname(base))
    url = f"sqlite:///{base}.sqlite3"
    out: dict[str, Any] = {"notes": []}

    def app() -> Any:
        return make_app(beatx_database_url=url)

    specs = [{"name": task_name(i), "task": TASK,
              "schedule": every(hours=1) if i % 2 else crontab(minute="0", hour=str(hour))}
             for i in range(n)]
    admin = BeatAdmin(url=url)
    admin.list(group="none")  # migrate outside the timed insert
    out["insert"], _ = timed(lambda: admin.add_many(specs))
    out["insert_method"] = f"one BeatAdmin.add_many() call with {n} tasks"
    admin.engine.dispose()

    def start() -> tuple[dict[str, float], Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = Scheduler(app(), lazy=False, schedule_filename=base)
        t1 = time.perf_counter()
        sched.tick()
        t2 = time.perf_counter()
        return {"startup": t2 - t0, "startup_construct": t1 - t0}, sched

    sched = measure_startups(start, cfg["repeats"], out)

    # Idle tick: nothing due and no poll due (the poll interval is pushed out of reach).
    default_interval = sched.beatx.sync_interval
    sched.beatx = replace(sched.beatx, sync_interval=1e9)
    durations, waits = tick_loop(sched.tick, cfg["tick_budget"], 200_000)
    out["idle_tick"] = stats(durations)
    out["idle_tick_min_wait"] = min(waits)
    # A tick that polls the change feed (and finds nothing): every tick polls at interval 0.
    sched.beatx = replace(sched.beatx, sync_interval=0.0)
    durations, _ = tick_loop(sched.tick, cfg["tick_budget"], 50_000)
    out["poll_tick"] = stats(durations)
    sched.beatx = replace(sched.beatx, sync_interval=default_interval)

    # Picking up one change made by another admin (its own engine, as another process).
    other = BeatAdmin(url=url)
    other.update(task_name(0), args=["warm-up"])
    sched.poll_changes()
    updates, pickups, seen = [], [], []
    for i in range(cfg["pickups"]):
        name = changed_name(i, n)
        updates.append(timed(lambda name=name, i=i: other.update(name, args=[i]))[0])
        seconds, changed = timed(sched.poll_changes)
        pickups.append(seconds)
        seen.append(changed)
    out["pickup"] = stats(pickups)
    out["pickup_changes_seen"] = seen
    if any(count != 1 for count in seen):
        out["notes"].append(f"pick-up: poll_changes() saw {seen} changes (expected 1 each)")
    out["admin_update"] = stats(updates)
    other.engine.dispose()

    # Sending: K tasks due at once (added by an admin whose clock is 2 h behind).
    past = datetime.now(UTC) - timedelta(hours=2)
    behind = BeatAdmin(url=url, clock=lambda: past)
    behind.add_many([{"name": "due-warm-up", "task": TASK, "schedule": every(hours=1)}])
    sched.poll_changes()
    sched.tick()  # sends the warm-up task: broker connection and producer are set up here
    due_specs = [{"name": f"due-{i:06d}", "task": TASK, "schedule": every(hours=1)}
                 for i in range(k)]
    out["insert_due"], _ = timed(lambda: behind.add_many(due_specs))
    sched.poll_changes()
    seconds, _ = timed(sched.tick)
    with sched.engine.connect() as conn:
        sent = conn.execute(select(func.count()).select_from(Run).where(
            Run.status == "sent", Run.task_name.like("due-0%"))).scalar_one()
    out["send_batch"] = seconds
    out["send_per_task"] = seconds / k
    out["sent"] = sent
    if sent != k:
        out["notes"].append(f"send: expected {k} runs marked sent, found {sent}")
    behind.engine.dispose()
    sched.close()
    out["notes"].append("pick-up is the time of Scheduler.poll_changes() after one update")
    return out


# -- celery's PersistentScheduler ------------------------------------------------------------

def worker_celery(cfg: dict[str, Any]) -> dict[str, Any]:
    from celery.beat import PersistentScheduler
    from celery.schedules import crontab

    n, k, hour = cfg["tasks"], cfg["due"], cfg["cron_hour"]
    path = os.path.join(cfg["workdir"], "celery", "celerybeat-schedule")
    os.makedirs(os.path.dirname(path))
    out: dict[str, Any] = {"notes": []}
    beat_schedule = {
        task_name(i): {"task": TASK,
                       "schedule": timedelta(hours=1) if i % 2 else crontab(minute="0",
                                                                          hour=str(hour))}
        for i in range(n)
    }
    app = make_app(beat_schedule=beat_schedule)
    out["insert"] = None
    out["insert_method"] = f"app.conf.beat_schedule with {n} entries (in code, not stored)"

    def start() -> tuple[dict[str, float], Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = PersistentScheduler(app, schedule_filename=path, lazy=False)
        sched.tick()
        return {"startup": time.perf_counter() - t0}, sched

    sched = measure_startups(start, cfg["repeats"], out)

    durations, waits = tick_loop(sched.tick, cfg["tick_budget"], 200_000)
    out["idle_tick"] = stats(durations)
    out["idle_tick_min_wait"] = min(waits)

    # Sending: K entries due at once.  Celery's tick sends one entry and returns 0, and
    # every tick compares the whole schedule, so only the first ``timed_sends`` are timed.
    timed_sends = min(k, 100)
    past = app.now() - timedelta(hours=2)
    for i in range(k + 1):
        sched.add(name=f"due-{i:06d}", task=TASK, schedule=timedelta(hours=1), last_run_at=past)
    sched.tick()  # rebuilds the heap (the key set changed) and sends the first one
    gc.collect()
    sent, start_t = 0, time.perf_counter()
    for _ in range(20 * timed_sends):
        if sched.tick() == 0:
            sent += 1
            if sent == timed_sends:
                break
    seconds = time.perf_counter() - start_t
    out["send_per_task"] = seconds / max(sent, 1)
    out["sent"] = sent
    sched.close()
    out["notes"].append(f"send: {k + 1} entries due; celery's tick sends one per call and "
                        f"each call compares the whole schedule; the first {sent} sends "
                        "after the heap rebuild are timed")
    return out


# -- sqlalchemy-celery-beat ----------------------------------------------------------------

def worker_sqlalchemy(cfg: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import insert, select
    from sqlalchemy_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        Period,
        PeriodicTask,
        PeriodicTaskChanged,
    )
    from sqlalchemy_celery_beat.schedulers import DatabaseScheduler, session_manager

    n, hour = cfg["tasks"], cfg["cron_hour"]
    path = os.path.join(cfg["workdir"], "sqlalchemy", "schedule.db")
    os.makedirs(os.path.dirname(path))
    url = f"sqlite:///{path}"
    out: dict[str, Any] = {"notes": []}
    app = make_app(beat_dburi=url)

    engine, session_factory = session_manager.create_session(url)
    session_manager.prepare_models(engine)
    now = datetime.now(UTC)

    def insert_rows() -> None:
        with session_factory() as session:
            interval = IntervalSchedule(every=1, period=Period.HOURS)
            cron = CrontabSchedule(minute="0", hour=str(hour), day_of_week="*",
                                   day_of_month="*", month_of_year="*", timezone="UTC")
            session.add_all([interval, cron])
            session.commit()
            rows = []
            for i in range(n):
                model = interval if i % 2 else cron
                rows.append({"name": task_name(i), "task": TASK, "args": "[]", "kwargs": "{}",
                             "headers": "{}", "enabled": True, "one_off": False,
                             "total_run_count": 0, "last_run_at": now, "date_changed": now,
                             "description": "", "discriminator": type(model).__name__.lower(),
                             "schedule_id": model.id})
            session.execute(insert(PeriodicTask), rows)
            session.commit()
            PeriodicTaskChanged.update_from_session(session)

    out["insert"], _ = timed(insert_rows)
    out["insert_method"] = f"one bulk INSERT of {n} PeriodicTask rows"

    def start() -> tuple[dict[str, float], Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = DatabaseScheduler(app=app, lazy=False)
        sched.tick()
        return {"startup": time.perf_counter() - t0}, sched

    sched = measure_startups(start, cfg["repeats"], out)

    durations, waits = tick_loop(sched.tick, cfg["tick_budget"], 50_000)
    out["idle_tick"] = stats(durations)
    out["idle_tick_min_wait"] = min(waits)

    def change(name: str, i: int) -> None:
        with session_factory() as session:
            row = session.scalars(select(PeriodicTask).where(PeriodicTask.name == name)).one()
            row.args = json.dumps([i])
            session.commit()

    measure_peer_pickups(sched, cfg, n, out, change)
    sched.close()
    out["notes"].append("pick-up is the tick after one PeriodicTask update (it re-reads every "
                        "enabled task and rebuilds the heap)")
    return out


# -- django-celery-beat ----------------------------------------------------------------------

def worker_django(cfg: dict[str, Any]) -> dict[str, Any]:
    import django
    from django.conf import settings

    n, hour = cfg["tasks"], cfg["cron_hour"]
    path = os.path.join(cfg["workdir"], "django", "db.sqlite3")
    os.makedirs(os.path.dirname(path))
    settings.configure(
        INSTALLED_APPS=["django_celery_beat"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": path}},
        USE_TZ=True, TIME_ZONE="UTC", DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.management import call_command
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        PeriodicTasks,
    )
    from django_celery_beat.schedulers import DatabaseScheduler

    out: dict[str, Any] = {"notes": []}
    app = make_app()
    call_command("migrate", verbosity=0)
    now = datetime.now(UTC)

    def insert_rows() -> None:
        interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
        cron = CrontabSchedule.objects.create(minute="0", hour=str(hour), timezone="UTC")
        PeriodicTask.objects.bulk_create([
            PeriodicTask(name=task_name(i), task=TASK, last_run_at=now,
                         **({"interval": interval} if i % 2 else {"crontab": cron}))
            for i in range(n)], batch_size=1000)
        PeriodicTasks.update_changed()

    out["insert"], _ = timed(insert_rows)
    out["insert_method"] = f"PeriodicTask.objects.bulk_create() of {n} rows"

    def start() -> tuple[dict[str, float], Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = DatabaseScheduler(app, lazy=False)
        sched.tick()
        return {"startup": time.perf_counter() - t0}, sched

    sched = measure_startups(start, cfg["repeats"], out)
    if out["loaded"] < n:
        out["notes"].append(
            f"start-up loads {out['loaded']} of {n + 1} tasks: django-celery-beat skips "
            "crontab tasks whose hour is more than 2 h from now")

    durations, waits = tick_loop(sched.tick, cfg["tick_budget"], 50_000)
    out["idle_tick"] = stats(durations)
    out["idle_tick_min_wait"] = min(waits)

    def change(name: str, i: int) -> None:
        row = PeriodicTask.objects.get(name=name)
        row.args = json.dumps([i])
        row.save()

    measure_peer_pickups(sched, cfg, n, out, change)
    sched.close()
    out["notes"].append("pick-up is the tick after one PeriodicTask.save() (it re-reads every "
                        "enabled task and rebuilds the heap)")
    return out


# -- RedBeat -------------------------------------------------------------------------------

def worker_redbeat(cfg: dict[str, Any]) -> dict[str, Any]:
    from types import SimpleNamespace

    import redis
    from celery.schedules import crontab, schedule
    from redbeat.schedulers import (
        RedBeatScheduler,
        RedBeatSchedulerEntry,
        acquire_distributed_beat_lock,
    )

    n, hour = cfg["tasks"], cfg["cron_hour"]
    out: dict[str, Any] = {"notes": []}
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    client.flushdb()
    app = make_app(redbeat_redis_url=REDIS_URL, redbeat_lock_timeout=60)
    now = app.now()
    interval, cron = schedule(timedelta(hours=1)), crontab(minute="0", hour=str(hour))

    def insert_entries() -> None:
        for i in range(n):
            RedBeatSchedulerEntry(task_name(i), TASK, interval if i % 2 else cron,
                                  app=app, last_run_at=now).save()

    out["insert"], _ = timed(insert_entries)
    out["insert_method"] = f"{n} x RedBeatSchedulerEntry.save()"

    def start() -> tuple[dict[str, float], Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = RedBeatScheduler(app, lazy=False)
        # What celery beat's beat_init signal does: take the distributed lock.
        acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=sched))
        sched.tick()
        return {"startup": time.perf_counter() - t0}, sched

    try:
        sched = measure_startups(start, cfg["repeats"], out)
        out["loaded"] = 0
        out["notes"].append("start-up loads nothing: each tick reads the due (and next) "
                            "entries from Redis")
        durations, waits = tick_loop(sched.tick, cfg["tick_budget"], 50_000)
        out["idle_tick"] = stats(durations)
        out["idle_tick_min_wait"] = min(waits)
        sched.close()
    finally:
        client.flushdb()
    return out


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ours": worker_ours,
    "celery": worker_celery,
    "sqlalchemy": worker_sqlalchemy,
    "django": worker_django,
    "redbeat": worker_redbeat,
}


def run_worker(name: str, cfg: dict[str, Any]) -> None:
    """Worker-process entry point: measure one scheduler, print one result line."""
    try:
        result = WORKERS[name](cfg)
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result = {"error": f"{type(exc).__name__}: {exc} "
                           f"({os.path.basename(last.filename)}:{last.lineno})",
                  "traceback": traceback.format_exc()}
    sys.stdout.write(MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


# -- the parent: run the workers, build the table --------------------------------------------

def spawn(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one worker in a subprocess; return its result or ``{"error": reason}``."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("BEATX_DATABASE_URL", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--config", json.dumps(cfg)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=WORKER_TIMEOUT[name])
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT[name]} s"}
    elapsed = time.perf_counter() - started
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
            result["wall_seconds"] = round(elapsed, 2)
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"worker exited with status {proc.returncode}: {tail[0]}"}


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def pick(result: dict[str, Any], key: str, field: str | None = None) -> float | None:
    value = result.get(key)
    if field is not None:
        value = value.get(field) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) else None


#: (metric label, key in our result, field, key in the peer's result, field, peers).
COMPARISONS: list[tuple[str, str, str | None, str, str | None, tuple[str, ...]]] = [
    ("start-up (construct + first tick)", "startup", None, "startup", None,
     ("celery", "sqlalchemy", "django", "redbeat")),
    ("idle tick, median", "idle_tick", "median", "idle_tick", "median",
     ("celery", "sqlalchemy", "django", "redbeat")),
    ("idle tick, p99", "idle_tick", "p99", "idle_tick", "p99",
     ("celery", "sqlalchemy", "django", "redbeat")),
    ("tick reading the store, median", "poll_tick", "median", "idle_tick", "median",
     ("sqlalchemy", "django", "redbeat")),
    ("pick up one changed task, median", "pickup", "median", "pickup", "median",
     ("sqlalchemy", "django")),
    ("send, per due task", "send_per_task", None, "send_per_task", None, ("celery",)),
]
#: Why a peer has no figure for a metric (shown instead of a number).
NOT_COMPARABLE = {
    ("pickup", "celery"): "n/a: beat_schedule changes need a restart",
    ("pickup", "redbeat"): "n/a: entries are re-read from Redis every tick",
    ("poll_tick", "celery"): "n/a: never reads a store while running",
}
#: Figures of ours alone: (label, key, field).
OURS_ONLY = [
    ("start-up, constructor only", "startup_construct", None),
    ("start-up, first (cold) start", "startup_cold", None),
    ("tick that polls (no changes), p99", "poll_tick", "p99"),
    ("pick up one changed task, max", "pickup", "max"),
    ("BeatAdmin.update() of one task, median", "admin_update", "median"),
    ("send, the whole batch of {due} due tasks (one tick)", "send_batch", None),
    ("insert {tasks} tasks (one add_many call)", "insert", None),
]


#: celery-beatx's goals: (label, key, field, limit in seconds).  Reported, never asserted.
TARGETS = [
    ("start-up (constructor) < 2 s", "startup_construct", None, 2.0),
    ("idle tick median < 1 ms", "idle_tick", "median", 1e-3),
    ("pick-up of one change < 20 ms", "pickup", "median", 20e-3),
]


def build_targets(ours: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for label, key, field, limit in TARGETS:
        value = pick(ours, key, field)
        out.append({"target": label, "value": value, "limit": limit,
                    "met": None if value is None else value < limit})
    return out


def build_rows(results: dict[str, dict[str, Any]], tasks: int,
               due: int) -> list[dict[str, Any]]:
    ours = results.get("ours", {})
    rows: list[dict[str, Any]] = []
    for label, okey, ofield, pkey, pfield, peers in COMPARISONS:
        ours_value = pick(ours, okey, ofield)
        for peer in peers:
            if peer not in results:
                continue
            result = results[peer]
            peer_value = pick(result, pkey, pfield)
            reason = None
            if "error" in result:
                reason = f"not measured: {result['error']}"
            elif peer_value is None:
                reason = "not measured"
            ratio = ours_value / peer_value if ours_value is not None and peer_value else None
            rows.append({"metric": label, "ours": ours_value, "peer": peer,
                         "peer_value": peer_value, "ratio": ratio, "reason": reason})
        for (key, peer), why in NOT_COMPARABLE.items():
            if key == okey and peer in results and peer not in peers:
                rows.append({"metric": label, "ours": ours_value, "peer": peer,
                             "peer_value": None, "ratio": None, "reason": why})
    for label, key, field in OURS_ONLY:
        rows.append({"metric": label.format(tasks=tasks, due=due),
                     "ours": pick(ours, key, field), "peer": None,
                     "peer_value": None, "ratio": None, "reason": None})
    return rows


def render(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]],
           meta: dict[str, Any]) -> str:
    lines = [f"celery-beatx scheduler benchmark: {meta['tasks']} tasks "
             f"(half every 1 h, half crontab at {meta['cron_hour']}:00 UTC), "
             f"{meta['due']} due at once for the send figure",
             "ratio = ours / peer: below 1 means celery-beatx is faster", ""]
    header = ("metric", "ours", "peer", "peer value", "ratio")
    table = []
    for row in rows:
        peer = row["peer"] or "-"
        peer_value = row["reason"] or fmt_seconds(row["peer_value"])
        if row["peer"] is None:
            peer_value = ""
        ratio = f"{row['ratio']:.3g}" if row["ratio"] is not None else ""
        if len(peer_value) > 60:
            peer_value = peer_value[:57] + "..."
        ours = fmt_seconds(row["ours"]) if row["ours"] is not None else (
            "not measured" if "ours" in results else "not run")
        table.append((row["metric"], ours, peer, peer_value, ratio))
    widths = [max(len(str(r[i])) for r in [header, *table]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells[:4], widths)) + "  " + cells[4]

    lines.append(line(header))
    lines.append(line(tuple("-" * w for w in widths) + ("-----",)))
    lines.extend(line(r) for r in table)
    lines.append("")
    lines.append("celery-beatx targets (informational, not asserted):")
    for target in build_targets(results.get("ours", {})):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        lines.append(f"  {target['target']:<32} {fmt_seconds(target['value']):>10}  {verdict}")
    lines.append("")
    lines.append("systems:")
    for name, result in results.items():
        version = meta["versions"].get(name, "?")
        if "error" in result:
            lines.append(f"  {name:<10} {LABELS[name]} {version}: not measured: "
                         f"{result['error']}")
            continue
        loaded = result.get("loaded")
        extra = f", {loaded} task(s) loaded at start" if loaded is not None else ""
        lines.append(f"  {name:<10} {LABELS[name]} {version}{extra}, "
                     f"worker {result.get('wall_seconds', '?')} s")
        insert = result.get("insert")
        if insert is not None:
            lines.append(f"             set-up: {result.get('insert_method')}: "
                         f"{fmt_seconds(insert)}")
        for note in result.get("notes", []):
            lines.append(f"             note: {note}")
    if "ours" in results and "error" not in results["ours"]:
        lines.append("  (ours: the send figure uses broker memory://: it measures celery-beatx's "
                     "bookkeeping plus kombu's in-memory publish, not a real broker)")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name, dist in DISTRIBUTIONS.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=None,
                        help="stored tasks (default 10000; 1000 with --quick)")
    parser.add_argument("--due", type=int, default=None,
                        help="tasks due at once for the send figure (default 1000; 100 quick)")
    parser.add_argument("--quick", action="store_true", help="small and short smoke run")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    parser.add_argument("--output", default=str(RESULTS), help="JSON results file")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, json.loads(args.config))
        return 0

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}")
    tasks = args.tasks or (1000 if args.quick else 10000)
    due = args.due or (100 if args.quick else 1000)
    workdir = tempfile.mkdtemp(prefix="beatx-bench-")
    cfg = {
        "tasks": tasks, "due": due, "cron_hour": cron_hour(), "workdir": workdir,
        "repeats": 2 if args.quick else 3,
        "tick_budget": 0.5 if args.quick else 2.0,
        "pickups": 5 if args.quick else 20,
        "peer_pickups": 3 if args.quick else 5,
    }
    meta = {
        "tasks": tasks, "due": due, "cron_hour": cfg["cron_hour"], "quick": args.quick,
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "versions": versions(), "config": dict(cfg, workdir=None),
    }
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        for name in systems:
            print(f"measuring {LABELS[name]} ...", file=sys.stderr, flush=True)
            results[name] = spawn(name, cfg)
            if "error" in results[name]:
                print(f"  not measured: {results[name]['error']}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    rows = build_rows(results, tasks, due)
    print(render(rows, results, meta))
    print(f"\ntotal {meta['wall_seconds']} s; results written to {args.output}")
    Path(args.output).write_text(json.dumps(
        {"meta": meta, "rows": rows, "targets": build_targets(results.get("ours", {})),
         "systems": results}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
