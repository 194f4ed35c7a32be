"""``make demo``: a real Celery worker and ``celery beat -S celery_beatx.Scheduler``.

1. ``add_tasks.py`` adds two tasks through the admin API (idempotent);
2. a worker and beat start as subprocesses (logs in ``var/worker.log``, ``var/beat.log``);
3. every task run is printed as it happens (the tasks append to ``var/fired.log``);
4. after ``DEMO_SECONDS`` (default 20) both are stopped (SIGTERM) and a summary is printed.

No server is needed: the broker is kombu's ``sqla+sqlite`` transport and the schedules live
in SQLite, under ``example_project/var/``.  The same demo on real servers::

    BROKER_URL=amqp://guest:guest@127.0.0.1:5672// \\
    BEATX_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/demo make demo

Exits 1 if nothing fired.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import add_tasks  # noqa: E402
from demo_app import BROKER_URL, DATABASE_URL, FIRED_LOG, VAR, app  # noqa: E402

STOP_TIMEOUT = 15.0


def hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = VAR / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]), PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "demo_app", *args],
                                cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return proc, log


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (Celery's warm shutdown), then SIGKILL if it takes too long."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


class Follower:
    """Print the lines the tasks append to ``var/fired.log`` as they arrive."""

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started
        self.offset = 0
        self.runs: Counter[str] = Counter()

    def poll(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        complete = data[:data.rfind("\n") + 1]
        self.offset += len(complete.encode())
        for line in complete.splitlines():
            stamp, entry, task_id, *detail = line.split(" ", 3)
            self.runs[entry] += 1
            print(f"  [+{float(stamp) - self.started:5.1f}s] {entry:<20} {' '.join(detail):<16}"
                  f" task id {task_id}", flush=True)


def purge_demo_queue() -> None:
    """Drop messages a previous, interrupted demo left in the queue."""
    try:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(app.conf.task_default_queue)
    except Exception:
        pass  # the queue does not exist yet


def main() -> int:
    seconds = float(os.environ.get("DEMO_SECONDS") or 20)
    print("celery-beatx demo")
    print(f"  broker:   {hide_password(BROKER_URL)}")
    print(f"  database: {hide_password(DATABASE_URL)}")
    print(f"  var:      {VAR}")
    print("\nadding tasks through BeatAdmin (add_tasks.py):")
    if add_tasks.main() != 0:
        return 1
    FIRED_LOG.write_text("")
    purge_demo_queue()

    started = time.time()
    follower = Follower(FIRED_LOG, started)
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        procs["worker"] = start("worker", "worker", "--pool=solo", "--loglevel=INFO",
                                "--without-heartbeat", "--without-gossip", "--without-mingle")
        procs["beat"] = start("beat", "beat", "-S", "celery_beatx.Scheduler", "--loglevel=INFO",
                              "-s", str(VAR / "celerybeat-schedule"), "--pidfile=")
        print(f"\nworker and beat started; running for {seconds:g}s "
              f"(logs: {VAR / 'worker.log'}, {VAR / 'beat.log'})")
        print("crontab tasks fire at the start of each minute (DEMO_SECONDS=70 shows them)\n")
        deadline = started + seconds
        while time.time() < deadline:
            follower.poll()
            for name, (proc, log) in procs.items():
                if proc.poll() is not None:
                    print(f"\n{name} exited early with status {proc.returncode}:\n{tail(log)}")
                    return 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        print("\nstopping beat and worker ...")
        for name in ("beat", "worker"):
            if name in procs:
                stop(procs[name][0])
    follower.poll()
    return summary(follower)


def describe(schedule: dict[str, Any]) -> str:
    """A short description of a stored schedule (its ``to_dict()`` form)."""
    kind = schedule.get("type")
    if kind == "interval":
        return f"every {schedule['seconds']}s"
    if kind == "cron":
        return f"cron {schedule['expr']!r}"
    if kind == "crontab":
        fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        return "crontab " + " ".join(str(schedule.get(f, "*")) for f in fields)
    return str(kind)


def summary(follower: Follower) -> int:
    from celery_beatx import BeatAdmin

    ran = Counter(follower.runs)
    fired = sum(ran.values())
    admin = BeatAdmin(app)
    try:
        tasks = admin.list()
    finally:
        admin.engine.dispose()
    print("\nsummary:")
    print(f"  {'task':<22} {'schedule':<26} {'ran now':>7} {'total':>6}  last run (UTC)")
    for info in tasks:
        last = f"{info.last_run_at:%H:%M:%S}" if info.last_run_at else "-"
        print(f"  {info.name:<22} {describe(info.schedule_dict):<26} "
              f"{ran.pop(info.name, 0):>7} {info.total_run_count:>6}  {last}")
    for name, count in sorted(ran.items()):  # e.g. a task removed meanwhile
        print(f"  {name:<22} {'?':<26} {count:>7}")
    print("  ('ran now': executed by the worker in this demo; 'total': the count kept in the "
          "database across runs)")
    if not fired:
        for name in ("beat", "worker"):
            print(f"\n{VAR / (name + '.log')} (end):\n{tail(VAR / (name + '.log'))}")
        print("\nnothing fired within DEMO_SECONDS: see the logs above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
