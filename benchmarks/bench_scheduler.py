"""Benchmark celery-beatx's scheduler beside the beat schedulers people use today, in one run.

Run with ``make bench`` (installs the ``[bench]`` extra, then runs this with no option), or::

    .venv/bin/python benchmarks/bench_scheduler.py [--sizes 1000,10000] [--quick] [--large]
        [--systems ours,celery,sqlalchemy,django,redbeat] [--backends sqlite,postgresql]
        [--figures core,send,lateness,bulk] [--output PATH]

Systems: celery-beatx (``ours``), celery's ``PersistentScheduler`` (shelve),
sqlalchemy-celery-beat and django-celery-beat (SQLite and PostgreSQL), RedBeat (Redis).
Every measurement runs in a subprocess of its own (``--job``); set-up writes happen in another
subprocess before it, so memory figures count the scheduler, not the insert.  A worker prints
one ``BENCH_RESULT {json}`` line; the parent prints the tables (with ratios against
celery-beatx) and writes the JSON.  A figure a peer cannot give is "not measured: <reason>";
nothing is invented and nothing is asserted.  See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_systems import ADAPTERS, QUEUE, task_name  # noqa: E402

UTC = timezone.utc
RESULTS = HERE / "results-latest.json"
MARKER = "BENCH_RESULT "
PG_URL = os.environ.get("BEATX_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BROKER = os.environ.get("BEATX_BENCH_REDIS", "redis://127.0.0.1:6379/9")
AMQP_BROKER = os.environ.get("BEATX_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
REDBEAT_URL = os.environ.get("BEATX_BENCH_REDBEAT", "redis://127.0.0.1:6379/7")

SYSTEMS = ("ours", "celery", "sqlalchemy", "django", "redbeat")
SQL_SYSTEMS = ("ours", "sqlalchemy", "django")
BACKENDS = ("sqlite", "postgresql")
FIGURES = ("core", "send", "lateness", "bulk")
BROKERS = {"redis": REDIS_BROKER, "rabbitmq": AMQP_BROKER}
LABELS = {
    "ours": "celery-beatx Scheduler",
    "celery": "celery PersistentScheduler (shelve file)",
    "sqlalchemy": "sqlalchemy-celery-beat DatabaseScheduler",
    "django": "django-celery-beat DatabaseScheduler",
    "redbeat": "RedBeatScheduler (Redis db 7)",
}
DISTRIBUTIONS = {"ours": "celery-beatx-sql", "celery": "celery",
                 "sqlalchemy": "sqlalchemy-celery-beat", "django": "django-celery-beat",
                 "redbeat": "celery-redbeat"}


def store_of(system: str, backend: str) -> str:
    """The store a system uses on ``backend`` (celery and RedBeat have one of their own)."""
    return {"celery": "shelve", "redbeat": "redis"}.get(system, backend)


# -- measuring helpers -------------------------------------------------------------------

def stats(samples: list[float]) -> dict[str, Any]:
    """Median, p99 (nearest rank), mean, min and max of ``samples``."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def rank(p: int) -> float:
        return ordered[min(len(ordered) - 1, max(0, -(-p * len(ordered) // 100) - 1))]

    return {"n": len(ordered), "median": statistics.median(ordered), "p50": rank(50),
            "p99": rank(99), "mean": statistics.fmean(ordered), "min": ordered[0],
            "max": ordered[-1]}


def rss() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tick_loop(tick: Callable[[], Any], budget: float, max_n: int,
              min_n: int = 20) -> tuple[list[float], list[Any]]:
    """Call ``tick`` repeatedly for about ``budget`` seconds; durations and results."""
    gc.collect()
    durations: list[float] = []
    results: list[Any] = []
    clock = time.perf_counter
    deadline = clock() + budget
    while len(durations) < max_n and (clock() < deadline or len(durations) < min_n):
        start = clock()
        results.append(tick())
        durations.append(clock() - start)
    return durations, results


class Publishes:
    """Every message this process publishes: ``(time.time(), args[0])``, by Celery's
    ``after_task_publish`` signal (the broker has accepted the message)."""

    def __init__(self) -> None:
        from celery.signals import after_task_publish

        self.events: list[tuple[float, Any]] = []
        after_task_publish.connect(self._on, weak=False)

    def _on(self, sender: Any = None, body: Any = None, **_: Any) -> None:
        args = body[0] if isinstance(body, (tuple, list)) and body else None
        self.events.append((time.time(), args[0] if args else None))

    def since(self, index: int, lo: int, hi: int) -> list[tuple[float, Any]]:
        return [e for e in self.events[index:] if isinstance(e[1], int) and lo <= e[1] < hi]


def purge(app: Any, delete: bool = False) -> None:
    """Empty (or delete) the benchmark's queue on the app's broker."""
    try:
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            try:
                channel.queue_purge(QUEUE)
            except Exception:
                pass
            if delete:
                channel.queue_delete(QUEUE)
    except Exception:
        pass


# -- workers ------------------------------------------------------------------------------

def job_setup(job: dict[str, Any]) -> dict[str, Any]:
    """Store N tasks (a process of its own, before the measuring one)."""
    adapter = ADAPTERS[job["system"]](job)
    gc.collect()
    start = time.perf_counter()
    method = adapter.insert(job["n"], job["cron_hour"])
    out: dict[str, Any] = {"insert": time.perf_counter() - start, "insert_method": method}
    if job["system"] == "celery":
        out["insert"] = None  # nothing is stored: the entries are built from the config
    storage = adapter.storage_bytes()
    out["storage_bytes"] = storage
    out["storage_per_task"] = storage / job["n"] if storage is not None else None
    adapter.close()
    return out


def job_core(job: dict[str, Any]) -> dict[str, Any]:
    """Start-up, memory, idle tick, change pick-up (work and latency) on a stored N."""
    adapter = ADAPTERS[job["system"]](job)
    n = job["n"]
    out: dict[str, Any] = {"notes": []}
    adapter.open()
    gc.collect()
    rss_before = rss()

    def start() -> tuple[float, Any]:
        gc.collect()
        t0 = time.perf_counter()
        sched = adapter.start()
        sched.tick()
        return time.perf_counter() - t0, sched

    out["startup_cold"], sched = start()
    gc.collect()
    out["rss_before"] = rss_before
    out["rss_loaded"] = rss()
    out["bytes_per_task"] = (out["rss_loaded"] - rss_before) / n
    out["loaded"] = len(sched.schedule)
    samples = []
    for _ in range(job["repeats"]):
        sched.close()
        sched = None
        seconds, sched = start()
        samples.append(seconds)
    out["startup_samples"] = samples
    out["startup"] = statistics.median(samples) if samples else out["startup_cold"]
    if job["system"] == "ours":
        out["notes"].append(f"start-up loads {out['loaded']} tasks")
        # Idle tick: nothing due, no poll due (the poll interval pushed out of reach).
        from dataclasses import replace

        interval = sched.beatx.sync_interval
        sched.beatx = replace(sched.beatx, sync_interval=1e9)
        durations, _ = tick_loop(sched.tick, job["tick_budget"], 100_000)
        out["idle_tick"] = stats(durations)
        sched.beatx = replace(sched.beatx, sync_interval=0.0)
        durations, _ = tick_loop(sched.tick, job["tick_budget"], 20_000)
        out["poll_tick"] = stats(durations)
        sched.beatx = replace(sched.beatx, sync_interval=interval)
    else:
        if job["system"] == "django" and out["loaded"] < n:
            out["notes"].append(f"loads {out['loaded']} of {n} tasks: django-celery-beat "
                                "skips crontab tasks whose hour is more than 2 h from now")
        if job["system"] == "redbeat":
            out["notes"].append("start-up loads nothing: each tick reads due entries")
        durations, _ = tick_loop(sched.tick, job["tick_budget"], 20_000)
        out["idle_tick"] = stats(durations)

    if adapter.no_pickup is None:
        pickup_work(adapter, sched, job, out)
        pickup_latency(adapter, sched, job, out)
    sched.close()
    if job["system"] == "celery":  # the shelve file exists once the scheduler synced it
        out["storage_bytes"] = adapter.storage_bytes()
        out["storage_per_task"] = out["storage_bytes"] / n
    adapter.close()
    out["peak_rss"] = peak_rss()
    return out


def changed_name(i: int, n: int) -> str:
    """The task changed by the ``i``-th pick-up: spread out, an hourly (odd) task."""
    return task_name(2 * ((i * 7919 + 1) % max(n // 2, 1)) + 1)


#: Polls (ticks, for the peers) with nothing changed before the pick-up work is measured.
WARM_POLLS = 6


def pickup_work(adapter: Any, sched: Any, job: dict[str, Any], out: dict[str, Any]) -> None:
    """CPU work to apply one committed change: ours ``poll_changes()``; the peers' next
    ``tick()`` (which finds their change marker and re-reads the schedule)."""
    n, works, misses = job["n"], [], 0
    # Steady state, as a running beat is after its first seconds: a few polls with nothing
    # to pick up first (psycopg prepares a statement from its fifth execution on; the
    # peers' ticks warm their caches the same way).
    for _ in range(WARM_POLLS):
        if job["system"] == "ours":
            sched.poll_changes()
        else:
            sched.tick()
    for i in range(job["pickups"]):
        name = changed_name(i, n)
        adapter.change(name, 1_000_000 + i)
        time.sleep(0.002)  # the peers' change marker is a timestamp
        gc.collect()
        t0 = time.perf_counter()
        if job["system"] == "ours":
            sched.poll_changes()
        else:
            sched.tick()
        works.append(time.perf_counter() - t0)
        if adapter.entry_args(sched, name) != [1_000_000 + i]:
            misses += 1
    out["pickup_work"] = stats(works)
    if misses:
        out["notes"].append(f"pick-up work: {misses} change(s) not seen after the step")


def pickup_latency(adapter: Any, sched: Any, job: dict[str, Any], out: dict[str, Any]) -> None:
    """Beat's own loop (tick, sleep what it returns) runs in a thread; the main thread
    commits a change at a random moment and waits until the loop holds it."""
    import random

    stop = threading.Event()
    wanted: dict[str, Any] = {}
    seen = threading.Event()
    errors: list[str] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                wait = sched.tick()
                target = wanted.get("name")
                if target is not None and not seen.is_set() and \
                        adapter.entry_args(sched, target) == wanted["args"]:
                    wanted["at"] = time.perf_counter()
                    seen.set()
                if wait and wait > 0:
                    time.sleep(min(wait, 30.0))  # beat's loop sleeps what tick returns
        except Exception as exc:  # reported, and the main thread stops waiting
            errors.append(f"{type(exc).__name__}: {exc}")
            seen.set()

    rng = random.Random(11)
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    latencies, timeouts = [], 0
    try:
        for i in range(job["latency_samples"]):
            time.sleep(rng.uniform(0.1, adapter.loop_interval))
            name = changed_name(1000 + i, job["n"])
            seen.clear()
            wanted.clear()
            wanted["args"] = [2_000_000 + i]
            wanted["name"] = name
            adapter.change(name, 2_000_000 + i)
            committed = time.perf_counter()
            if not seen.wait(job["latency_timeout"]) or errors:
                timeouts += 1
                wanted.clear()
                if errors:
                    break
                continue
            latencies.append(wanted["at"] - committed)
    finally:
        stop.set()
        thread.join(60)
    out["pickup_latency"] = stats(latencies)
    if timeouts:
        out["notes"].append(f"pick-up latency: {timeouts} change(s) not seen within "
                            f"{job['latency_timeout']} s" + (f" ({errors[0]})" if errors else ""))


def run_until(sched: Any, done: Callable[[], bool], deadline: float) -> bool:
    """Beat's loop: tick, sleep what it returns, until ``done()`` or ``deadline``."""
    while time.perf_counter() < deadline:
        wait = sched.tick()
        if done():
            return True
        if wait and wait > 0:
            time.sleep(min(wait, max(0.0, deadline - time.perf_counter())))
    return done()


def job_send(job: dict[str, Any]) -> dict[str, Any]:
    """K tasks due at once, sent to a real broker, run state written; for each K."""
    adapter = ADAPTERS[job["system"]](job)
    adapter.insert(job["base_n"], job["cron_hour"])
    adapter.open()
    out: dict[str, Any] = {"notes": [], "bursts": {}}
    publishes = Publishes()
    purge(adapter.app)
    sched = adapter.start()
    sched.tick()
    try:
        # Warm-up: one due task, so the broker connection and producer exist.
        adapter.add_due(sched, ["due-warm-up"], 10**8)
        if not run_until(sched, lambda: bool(publishes.since(0, 10**8, 10**8 + 1)),
                         time.perf_counter() + 30):
            raise RuntimeError("the warm-up task was not sent within 30 s")
        first = 0
        for k in job["ks"]:
            first += 10**6
            names = [f"due{k}-{j:06d}" for j in range(k)]
            adapter.add_due(sched, names, first)
            mark = len(publishes.events)
            committed = time.time()
            deadline = time.perf_counter() + job["send_budget"]

            def all_sent(first: int = first, k: int = k, mark: int = mark) -> bool:
                return len(publishes.since(mark, first, first + k)) >= k

            run_until(sched, all_sent, deadline)
            events = publishes.since(mark, first, first + k)
            flush_start = time.perf_counter()
            adapter.flush_state(sched)
            flush = time.perf_counter() - flush_start
            result: dict[str, Any] = {"k": k, "published": len(events), "state_flush": flush}
            if events:
                span = events[-1][0] - events[0][0] + flush
                result["first_send_after_commit"] = events[0][0] - committed
                result["seconds"] = span
                result["sends_per_second"] = len(events) / span if span > 0 else None
            if job["system"] == "ours":
                confirmed = adapter.sent_runs(f"due{k}-%")
                result["runs_marked_sent"] = confirmed
                if confirmed != len(events):
                    result["note"] = f"{confirmed} runs marked sent for {len(events)} messages"
            if len(events) < k:
                result["note"] = (f"only {len(events)} of {k} sent within the "
                                  f"{job['send_budget']:.0f} s budget")
            out["bursts"][str(k)] = result
            purge(adapter.app)
    finally:
        sched.close()
        purge(adapter.app, delete=True)
        adapter.close()
    return out


def job_lateness(job: dict[str, Any]) -> dict[str, Any]:
    """Lateness behind the scheduled time under a steady rate (every(60), staggered)."""
    adapter = ADAPTERS[job["system"]](job)
    count, window = job["tasks"], job["window"]
    base = time.time() + job["lead"]
    step = 60.0 / count
    first_due = [datetime.fromtimestamp(round(base + i * step, 1), UTC) for i in range(count)]
    out: dict[str, Any] = {"notes": [], "tasks": count,
                           "rate_per_minute": count}
    t0 = time.perf_counter()
    out["insert_method"] = adapter.insert_staggered(count, first_due)
    out["insert"] = time.perf_counter() - t0
    adapter.open()
    publishes = Publishes()
    purge(adapter.app)
    t0 = time.perf_counter()
    sched = adapter.start()
    if job["system"] == "celery":
        for i in range(count):
            sched.schedule[task_name(i)].last_run_at = first_due[i] - timedelta(seconds=60)
        sched._heap = None  # rebuilt from the new last_run_at values at the next tick
    sched.tick()
    ready = time.time()
    out["startup"] = time.perf_counter() - t0
    win_start = max(base, ready + 1.0)
    win_end = min(win_start + window, base + 60.0)
    if win_end - win_start < min(5.0, window / 2):
        sched.close()
        adapter.close()
        return {"error": f"start-up ended {ready - base:.1f} s after the first task was due; "
                         "no steady window left in the minute"}
    out["backlog_at_start"] = sum(1 for when in first_due if when.timestamp() < ready)
    stop_at = win_end + job["drain"]
    try:
        deadline = time.perf_counter() + (stop_at - time.time())
        run_until(sched, lambda: False, deadline)
    finally:
        sched.close()
        purge(adapter.app, delete=True)
        adapter.close()
    sent: dict[int, float] = {}
    for at, i in publishes.events:
        if isinstance(i, int) and i not in sent:
            sent[i] = at
    late, missing = [], 0
    for i, when in enumerate(first_due):
        due = when.timestamp()
        if win_start <= due < win_end:
            if i in sent:
                late.append(max(0.0, sent[i] - due))
            else:
                missing += 1
                late.append(stop_at - due)
    out["window"] = [win_start - base, win_end - base]
    out["in_window"] = len(late)
    out["missing"] = missing
    out["lateness"] = stats(late)
    if missing:
        out["notes"].append(f"{missing} of {len(late)} tasks due in the window were not sent "
                            f"{job['drain']:.0f} s after it: lateness is a lower bound")
    return out


def job_bulk(job: dict[str, Any]) -> dict[str, Any]:
    """``BeatAdmin.add_many`` and ``BeatAdmin.import_state`` of N tasks (ours)."""
    from celery_beatx import crontab, every
    from celery_beatx.admin import BeatAdmin

    n, (url_a, url_b) = job["n"], job["urls"]
    if job["backend"] == "sqlite":
        url_a = f"sqlite:///{job['workdir']}/bulk-a.sqlite3"
        url_b = f"sqlite:///{job['workdir']}/bulk-b.sqlite3"
    out: dict[str, Any] = {"notes": []}
    specs = [{"name": task_name(i), "task": "bench.noop", "args": [i],
              "schedule": every(hours=1) if i % 2 else crontab(minute="0", hour="3")}
             for i in range(n)]
    admin = BeatAdmin(url=url_a)
    admin.list(group="none")  # migrate outside the timed call
    gc.collect()
    t0 = time.perf_counter()
    admin.add_many(specs)
    out["add_many"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    document = admin.export_state()
    out["export"] = time.perf_counter() - t0
    admin.engine.dispose()
    other = BeatAdmin(url=url_b)
    other.list(group="none")
    gc.collect()
    t0 = time.perf_counter()
    imported = other.import_state(document)
    out["import"] = time.perf_counter() - t0
    out["imported"] = imported
    other.engine.dispose()
    return out


JOBS = {"setup": job_setup, "core": job_core, "send": job_send, "lateness": job_lateness,
        "bulk": job_bulk}


def run_job(job: dict[str, Any]) -> None:
    """Worker-process entry point: one job, one result line."""
    profile_to = os.environ.get("BENCH_PROFILE")  # a path prefix: cProfile each job to it
    profiler = None
    if profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        result = JOBS[job["kind"]](job)
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        result = {"error": f"{type(exc).__name__}: {str(exc)[:300]} "
                           f"({os.path.basename(last.filename)}:{last.lineno})",
                  "traceback": traceback.format_exc()}
    if profiler is not None:
        profiler.disable()
        parts = [job.get(k) for k in ("kind", "system", "backend", "n")]
        parts.append(job.get("broker_url", "").split(":")[0])
        profiler.dump_stats(f"{profile_to}.{'-'.join(str(p) for p in parts if p)}.prof")
    sys.stdout.write(MARKER + json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


# -- the parent: plan, run, report -------------------------------------------------------

class Stores:
    """Fresh PostgreSQL databases (dropped after use) and the RedBeat Redis database."""

    def __init__(self) -> None:
        self.admin: Any = None

    def pg(self) -> Any:
        if self.admin is None:
            import sqlalchemy as sa

            self.admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        return self.admin

    def create_pg(self) -> str:
        import sqlalchemy as sa

        name = f"beatx_bench_{uuid.uuid4().hex[:10]}"
        with self.pg().connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        return sa.engine.make_url(PG_URL).set(database=name).render_as_string(False)

    def drop_pg(self, url: str) -> None:
        import sqlalchemy as sa

        name = sa.engine.make_url(url).database
        with self.pg().connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))

    @staticmethod
    def flush_redbeat() -> None:
        import redis

        redis.Redis.from_url(REDBEAT_URL).flushdb()


def spawn(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one job in a subprocess; its result or ``{"error": reason}``."""
    env = dict(os.environ)
    for key in ("DJANGO_SETTINGS_MODULE", "BEATX_DATABASE_URL"):
        env.pop(key, None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--job", json.dumps(job)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"worker exited with status {proc.returncode}: {tail[0][:300]}"}


def with_store(stores: Stores, job: dict[str, Any], fn: Callable[[dict[str, Any]], Any]) -> Any:
    """Give ``job`` a fresh store (PG database / temp dir / RedBeat db), run ``fn``, clean up."""
    workdir = tempfile.mkdtemp(prefix="beatx-bench-")
    job = dict(job, workdir=workdir, redbeat_url=REDBEAT_URL)
    urls: list[str] = []
    try:
        if job["backend"] == "postgresql":
            for _ in range(job.get("databases", 1)):
                urls.append(stores.create_pg())
            job["url"], job["urls"] = urls[0], urls
        else:
            job["urls"] = [None, None]
        if job["system"] == "redbeat":
            stores.flush_redbeat()
        return fn(job)
    finally:
        for url in urls:
            try:
                stores.drop_pg(url)
            except Exception as exc:
                print(f"  could not drop {url}: {exc}", file=sys.stderr)
        if job["system"] == "redbeat":
            stores.flush_redbeat()
        shutil.rmtree(workdir, ignore_errors=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plan_and_run(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    stores = Stores()
    results: dict[str, Any] = {"core": {}, "send": {}, "lateness": {}, "bulk": {}}
    systems, backends, figures = args.systems, args.backends, args.figures
    quick = args.quick

    def backend_list(system: str) -> list[str]:
        """Backends a system runs on: celery and RedBeat once (their own store)."""
        if system in SQL_SYSTEMS:
            return backends
        return backends[:1]

    if "core" in figures:
        for n in cfg["sizes"]:
            for system in systems:
                for backend in backend_list(system):
                    if n > 100_000 and (system != "ours" or backend != "postgresql"):
                        continue
                    log(f"core: {system} on {store_of(system, backend)}, N={n:,} ...")
                    job = {"system": system, "backend": backend, "n": n,
                           "cron_hour": cfg["cron_hour"],
                           "entries": {"kind": "cron", "n": n, "cron_hour": cfg["cron_hour"]},
                           "repeats": 1 if n >= 100_000 else cfg["repeats"],
                           "tick_budget": cfg["tick_budget"],
                           # a peer's pick-up at 100,000 takes seconds; ours, ms
                           "pickups": (2 if n >= 100_000 and system != "ours"
                                       else cfg["pickups"]),
                           "latency_samples": (2 if n >= 100_000 and system != "ours"
                                               else cfg["latency_samples"]),
                           "latency_timeout": 60.0 + n / 2000}
                    timeout = 300 + n * 0.02

                    def core(job: dict[str, Any], timeout: float = timeout) -> dict[str, Any]:
                        setup = spawn(dict(job, kind="setup"), timeout)
                        if "error" in setup:
                            return {"error": f"set-up: {setup['error']}"}
                        merged = {k: v for k, v in setup.items() if k != "wall_seconds"}
                        merged.update(spawn(dict(job, kind="core"), timeout))
                        return merged

                    result = with_store(stores, job, core)
                    results["core"].setdefault(store_of(system, backend), {}) \
                        .setdefault(str(n), {})[system] = result
                    if "error" in result:
                        log(f"  not measured: {result['error']}")

    if "send" in figures:
        for system in systems:
            for backend in backend_list(system):
                for broker, broker_url in BROKERS.items():
                    log(f"send: {system} on {store_of(system, backend)} to {broker}, "
                        f"K={cfg['ks']} ...")
                    job = {"kind": "send", "system": system, "backend": backend,
                           "broker_url": broker_url, "base_n": cfg["send_base_n"],
                           "cron_hour": cfg["cron_hour"], "ks": cfg["ks"],
                           "entries": {"kind": "cron", "n": cfg["send_base_n"],
                                       "cron_hour": cfg["cron_hour"]},
                           "send_budget": cfg["send_budget"]}
                    timeout = 120 + len(cfg["ks"]) * (cfg["send_budget"] + 120)
                    result = with_store(stores, job, lambda j, t=timeout: spawn(j, t))
                    results["send"].setdefault(store_of(system, backend), {}) \
                        .setdefault(broker, {})[system] = result
                    if "error" in result:
                        log(f"  not measured: {result['error']}")

    if "lateness" in figures:
        count = cfg["lateness_tasks"]
        for system in systems:
            for backend in backend_list(system):
                log(f"lateness: {system} on {store_of(system, backend)}, {count:,} tasks "
                    f"every 60 s, {cfg['window']:.0f} s window ...")
                lead = lead_estimate(results["core"].get(store_of(system, backend), {}),
                                     system, count, quick)
                job = {"kind": "lateness", "system": system, "backend": backend,
                       "broker_url": REDIS_BROKER, "tasks": count, "window": cfg["window"],
                       "drain": cfg["drain"], "lead": lead,
                       "entries": {"kind": "minute", "n": count}}
                timeout = lead * 3 + cfg["window"] + cfg["drain"] + 300
                result = with_store(stores, job, lambda j, t=timeout: spawn(j, t))
                result["lead"] = lead
                results["lateness"].setdefault(store_of(system, backend), {})[system] = result
                if "error" in result:
                    log(f"  not measured: {result['error']}")

    if "bulk" in figures and "ours" in systems:
        for backend in backends:
            for n in cfg["bulk_sizes"]:
                log(f"bulk: add_many / import_state of {n:,} on {backend} ...")
                job = {"kind": "bulk", "system": "ours", "backend": backend, "n": n,
                       "databases": 2}
                result = with_store(stores, job, lambda j, n=n: spawn(j, 300 + n * 0.03))
                results["bulk"].setdefault(backend, {})[str(n)] = result
                if "error" in result:
                    log(f"  not measured: {result['error']}")
    return results


def lead_estimate(core: dict[str, Any], system: str, count: int, quick: bool) -> float:
    """Seconds from the start of the lateness job to the first task due: the set-up and
    start-up time measured in this run for the nearest N, scaled to ``count`` (with room);
    a guess when there is none."""
    best = None
    for n, by_system in core.items():
        result = by_system.get(system, {})
        if "startup_cold" in result and (best is None or int(n) > best[0]):
            best = (int(n), result)
    if best is None:
        return 10.0 + count / (5000 if quick else 2000)
    n, result = best
    insert = result.get("insert") or 0.0
    if system == "ours":
        insert *= 1.5  # the staggered insert is one add_many per first-due instant
    spent = (insert + result["startup_cold"]) * max(1.0, count / n)
    return round(min(600.0, 1.3 * spent + 5.0), 1)


# -- rendering --------------------------------------------------------------------------

def fmt_time(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def get(result: dict[str, Any], path: str) -> float | None:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


#: Core figures: (label, path in the result, formatter, lower is better, n/a reasons).
CORE_METRICS: list[tuple[str, str, Callable[[Any], str], bool]] = [
    ("start-up (construct + 1st tick)", "startup", fmt_time, True),
    ("start-up, first in process", "startup_cold", fmt_time, True),
    ("idle tick, median", "idle_tick.median", fmt_time, True),
    ("idle tick, p99", "idle_tick.p99", fmt_time, True),
    ("pick up a change: work, median", "pickup_work.median", fmt_time, True),
    ("pick up a change: latency, median", "pickup_latency.median", fmt_time, True),
    ("pick up a change: latency, max", "pickup_latency.max", fmt_time, True),
    ("RSS of the loaded scheduler", "rss_loaded", fmt_bytes, True),
    ("peak RSS (process)", "peak_rss", fmt_bytes, True),
    ("beat memory per task (RSS delta / N)", "bytes_per_task", fmt_bytes, True),
    ("storage per task", "storage_per_task", fmt_bytes, True),
    ("set-up insert of N (context)", "insert", fmt_time, True),
]
NOT_APPLICABLE = {
    ("pickup_work", "celery"): "n/a: needs a restart",
    ("pickup_latency", "celery"): "n/a: needs a restart",
    ("pickup_work", "redbeat"): "n/a: read when due",
    ("pickup_latency", "redbeat"): "n/a: read when due",
}


def ratio_text(ours: float | None, peer: float | None, lower_better: bool) -> str:
    """How many times better celery-beatx is (below 1: worse)."""
    if ours is None or peer is None or ours <= 0 or peer <= 0:
        return ""
    factor = peer / ours if lower_better else ours / peer
    return f" (x{factor:.3g})" if factor < 100 else f" (x{factor:,.0f})"


def cell(result: dict[str, Any] | None, path: str, fmt: Callable[[Any], str],
         system: str, ours: dict[str, Any] | None, lower_better: bool) -> str:
    if result is None:
        return "not run"
    if "error" in result:
        return "not measured: " + result["error"][:40]
    value = get(result, path)
    if value is None:
        why = NOT_APPLICABLE.get((path.split(".")[0], system))
        return why or "not measured"
    text = fmt(value)
    if system != "ours" and ours is not None and "error" not in ours:
        text += ratio_text(get(ours, path), value, lower_better)
    return text


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return out


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    systems = meta["systems"]
    lines = [f"celery-beatx benchmark ({meta['date']}, {meta['machine']})",
             "peer cells: value (xF) = celery-beatx is F times better (F < 1: worse)", ""]
    core = results["core"]
    sizes = sorted({int(n) for by_n in core.values() for n in by_n})
    for backend in meta["backends"]:
        for n in sizes:
            here = core.get(backend, {}).get(str(n), {})
            cols = {s: here.get(s) for s in systems}
            for own in ("celery", "redbeat"):
                if own in systems:
                    cols[own] = core.get(store_of(own, backend), {}).get(str(n), {}).get(own)
            if not any(v is not None for v in cols.values()):
                continue
            ours = cols.get("ours")
            lines.append(f"== {backend}, N = {n:,} tasks (half every 1 h, half daily crontab; "
                         "celery: shelve, redbeat: Redis) ==")
            rows = []
            for label, path, fmt, lower in CORE_METRICS:
                rows.append([label] + [cell(cols[s], path, fmt, s, ours, lower)
                                       for s in systems])
            lines += table(["figure", *systems], rows) + [""]
    send = results["send"]
    if send:
        lines.append(f"== sends per second: K tasks due at once, real broker, state written "
                     f"({meta['config']['send_base_n']:,} other tasks stored) ==")
        rows = []
        for backend in meta["backends"]:
            for broker in BROKERS:
                cols = {}
                for s in systems:
                    cols[s] = send.get(store_of(s, backend), {}).get(broker, {}).get(s)
                if not any(v is not None for v in cols.values()):
                    continue
                for k in meta["config"]["ks"]:
                    path = f"bursts.{k}.sends_per_second"
                    rows.append([f"{backend} / {broker}, K={k:,}"] +
                                [cell(cols[s], path, fmt_rate, s, cols.get("ours"), False)
                                 for s in systems])
        lines += table(["store / broker", *systems], rows) + [""]
    late = results["lateness"]
    if late:
        cfg = meta["config"]
        lines.append(f"== lateness behind the scheduled time: {cfg['lateness_tasks']:,} tasks "
                     f"every 60 s, staggered ({cfg['lateness_tasks']:,}/min), Redis broker, "
                     f"{cfg['window']:.0f} s window ==")
        rows = []
        for backend in meta["backends"]:
            cols = {s: late.get(store_of(s, backend), {}).get(s) for s in systems}
            ours = cols.get("ours")
            for label, path in (("p50", "lateness.p50"), ("p99", "lateness.p99"),
                                ("max", "lateness.max")):
                rows.append([f"{backend}: {label}"] +
                            [cell(cols[s], path, fmt_time, s, ours, True) for s in systems])
        lines += table(["store", *systems], rows) + [""]
    bulk = results["bulk"]
    if bulk:
        lines.append("== celery-beatx bulk writes (one call each; the peers have no "
                     "validated bulk API: not measured) ==")
        rows = []
        for backend, by_n in bulk.items():
            for n, result in sorted(by_n.items(), key=lambda kv: int(kv[0])):
                if "error" in result:
                    rows.append([f"{backend}, N={int(n):,}", "not measured: " +
                                 result["error"][:60], "", ""])
                    continue
                rows.append([f"{backend}, N={int(n):,}", fmt_time(result.get("add_many")),
                             fmt_time(result.get("import")), fmt_time(result.get("export"))])
        lines += table(["store, N", "add_many", "import_state", "export_state"], rows) + [""]
    lines.append("notes:")
    for section, data in results.items():
        for key, by in data.items():
            for sub, value in by.items():
                for system, result in (value.items() if section in ("core", "send")
                                       else [(sub, value)]):
                    if not isinstance(result, dict):
                        continue
                    notes = list(result.get("notes", []))
                    for burst in (result.get("bursts") or {}).values():
                        if burst.get("note"):
                            notes.append(f"K={burst['k']}: {burst['note']}")
                    if "error" in result:
                        notes.append("not measured: " + result["error"])
                    for note in notes:
                        where = f"{section} {key} {sub}" if section in ("core", "send") \
                            else f"{section} {key}"
                        lines.append(f"  {where} {system}: {note}")
    lines.append("")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
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


def cron_hour() -> int:
    """A UTC hour about 12 h away (no crontab task falls due during the run)."""
    hour = (datetime.now(UTC).hour + 12) % 24
    return 5 if hour == 4 else hour


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "?")
    except OSError:
        model = "?"
    return f"{os.cpu_count()} CPU {model}, Python {platform.python_version()}"


def csv(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if allowed is not None:
        bad = sorted(set(items) - set(allowed))
        if bad:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(bad)} "
                                             f"(choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in csv(s)],
                        help="N values (default 1000,10000,100000; 1000 with --quick)")
    parser.add_argument("--large", action="store_true",
                        help="also N=1,000,000 for celery-beatx on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="small and short smoke run")
    parser.add_argument("--systems", type=lambda s: csv(s, SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--backends", type=lambda s: csv(s, BACKENDS), default=list(BACKENDS))
    parser.add_argument("--figures", type=lambda s: csv(s, FIGURES), default=list(FIGURES))
    parser.add_argument("--ks", type=lambda s: [int(x) for x in csv(s)],
                        help="burst sizes for the send figure (default 1000,10000)")
    parser.add_argument("--send-budget", type=float,
                        help="seconds a scheduler gets to send one burst (default 120)")
    parser.add_argument("--lateness-tasks", type=int,
                        help="tasks every 60 s for the lateness figure (default 100000)")
    parser.add_argument("--output", default=str(RESULTS), help="JSON results file")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        run_job(json.loads(args.job))
        return 0
    quick = args.quick
    sizes = args.sizes or ([1000] if quick else [1_000, 10_000, 100_000])
    if args.large and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    cfg = {
        "sizes": sizes, "cron_hour": cron_hour(),
        "repeats": 1 if quick else 3, "tick_budget": 0.3 if quick else 2.0,
        "pickups": 2 if quick else 5, "latency_samples": 2 if quick else 5,
        "ks": args.ks or ([100] if quick else [1_000, 10_000]),
        "send_base_n": 1000, "send_budget": args.send_budget or (20.0 if quick else 120.0),
        "lateness_tasks": args.lateness_tasks or (2_000 if quick else 100_000),
        "window": 5.0 if quick else 60.0, "drain": 3.0 if quick else 15.0,
        "bulk_sizes": [n for n in sizes if 10_000 <= n <= 100_000] or
                      ([min(sizes)] if quick else [10_000, 100_000]),
    }
    if quick and cfg["lateness_tasks"] and args.lateness_tasks is None:
        cfg["window"] = 5.0
    meta = {"command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
            "platform": platform.platform(), "quick": quick, "systems": args.systems,
            "backends": args.backends, "figures": args.figures, "versions": versions(),
            "config": cfg, "load_average_at_start": os.getloadavg()}
    started = time.perf_counter()
    results = plan_and_run(argparse.Namespace(
        systems=args.systems, backends=args.backends, figures=args.figures, quick=quick), cfg)
    meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    meta["load_average_at_end"] = os.getloadavg()
    print(render(results, meta))
    print(f"\ntotal {meta['wall_seconds']} s; results written to {args.output}")
    Path(args.output).write_text(json.dumps({"meta": meta, "results": results}, indent=1,
                                            default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
