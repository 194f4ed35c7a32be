"""Run real ``celery worker`` and ``celery beat`` processes for the end-to-end tests.

:class:`Cluster` starts the processes (``sys.executable -m celery``) with the environment
:mod:`e2eapp` reads, sends their output to log files, stops them with SIGTERM (then SIGKILL
after a timeout) and reads the marker file the ``e2eapp.mark`` task appends to.  Every wait
is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
T = TypeVar("T")

AMQP_URL = os.environ.get("BEATX_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("BEATX_TEST_REDIS", "redis://127.0.0.1:6379/7")
BROKERS = {"rabbitmq": AMQP_URL, "redis": REDIS_URL}

#: How long a process gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0


def check_broker(url: str) -> Exception | None:
    """Connect once to ``url``; return the error, or None when the broker answers."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:  # any failure to connect means "not reachable"
        return exc
    return None


def delete_queue(url: str, queue: str) -> None:
    """Drop the test's queue and its exchange (same name) from the shared broker.

    The queue is declared first: kombu's Redis transport only deletes bindings it knows of
    in this connection.
    """
    from kombu import Connection, Exchange, Queue

    exchange = Exchange(queue, "direct")
    try:
        with Connection(url, connect_timeout=3) as conn:
            channel = conn.default_channel
            bound = Queue(queue, exchange, routing_key=queue)(channel)
            bound.declare()
            bound.delete()
            exchange(channel).delete()
    except Exception:
        pass  # best effort


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Marker:
    """One line of the marker file: one execution of ``e2eapp.mark`` by the worker."""

    task_id: str
    label: str
    extra: list[Any]
    time: float
    entry: str | None
    scheduled_at: datetime | None

    @classmethod
    def parse(cls, line: str) -> Marker:
        data = json.loads(line)
        run = data.get("beatx_run") or {}
        scheduled = run.get("scheduled_at")
        return cls(task_id=data["task_id"], label=data["label"], extra=data.get("extra", []),
                   time=data["time"], entry=run.get("name"),
                   scheduled_at=datetime.fromisoformat(scheduled) if scheduled else None)


@dataclass
class Proc:
    """A started celery process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit status.

        A SIGSTOPped process is continued after the SIGTERM, so that it can act on it.
        """
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.send_signal(signal.SIGCONT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill9(self, timeout: float = 10.0) -> int:
        """SIGKILL (a crash: nothing runs after it) and reap; returns the exit status."""
        if self.popen.poll() is None:
            self.popen.kill()
        return self.popen.wait(timeout)

    def sigstop(self) -> None:
        """Freeze the process (SIGSTOP): it keeps its connections and locks but runs nothing."""
        self.popen.send_signal(signal.SIGSTOP)

    def sigcont(self) -> None:
        """Let a SIGSTOPped process run again."""
        self.popen.send_signal(signal.SIGCONT)

    def log_size(self) -> int:
        """Bytes in the log so far: pass to :meth:`output_since` to read only what follows."""
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def output_since(self, offset: int) -> str:
        """The log from byte ``offset`` on."""
        try:
            with open(self.log, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout:.0f}s") from None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float, since: int = 0) -> None:
        """Wait until ``text`` is in the log (after byte ``since``); fail if it exits."""
        def seen() -> bool:
            if text in self.output_since(since):
                return True
            if not self.running():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before logging {text!r}")
            return False

        try:
            wait_for(seen, timeout, f"{self.name} to log {text!r}")
        except AssertionError:
            self.dump_stacks()
            raise

    def dump_stacks(self) -> None:
        """Have the process write every thread's stack to its log (e2eapp registers
        faulthandler on SIGUSR1), so a stall shows where it was."""
        if self.running():
            self.popen.send_signal(signal.SIGUSR1)
            time.sleep(0.5)


@dataclass
class Cluster:
    """One test's worker and beat processes, broker, database, queue and marker file."""

    broker_url: str
    database_url: str
    workdir: Path
    schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
    sync_interval: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)
    queue: str = field(default_factory=lambda: f"beatx-e2e-{uuid.uuid4().hex[:12]}")
    procs: list[Proc] = field(default_factory=list)

    @property
    def markers_path(self) -> Path:
        return self.workdir / "markers.jsonl"

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CELERY_CONFIG_MODULE", None)
        pythonpath = [str(HERE), str(REPO)]
        if env.get("PYTHONPATH"):
            pythonpath.append(env["PYTHONPATH"])
        env.update(
            PYTHONPATH=os.pathsep.join(pythonpath),
            PYTHONUNBUFFERED="1",
            E2E_BROKER_URL=self.broker_url,
            E2E_QUEUE=self.queue,
            E2E_MARKERS=str(self.markers_path),
            E2E_SCHEDULE=json.dumps(self.schedule),
            E2E_SYNC_INTERVAL=str(self.sync_interval),
            BEATX_DATABASE_URL=self.database_url,
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Proc:
        index = sum(p.name.split("#")[0] == name for p in self.procs) + 1
        label = f"{name}#{index}"
        log = self.workdir / f"{name}-{index}.log"
        argv = [sys.executable, "-m", "celery", "-A", "e2eapp", *args]
        with open(log, "wb") as out:
            popen = subprocess.Popen(argv, cwd=self.workdir, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc = Proc(label, popen, log, argv)
        self.procs.append(proc)
        return proc

    def start_worker(self, wait: bool = True, timeout: float = 30.0, pool: str = "solo",
                     concurrency: int | None = None) -> Proc:
        """A worker consuming only this test's queue (solo pool unless told otherwise,
        e.g. ``pool="prefork", concurrency=4``)."""
        pool_args = [f"--pool={pool}"]
        if concurrency is not None:
            pool_args += ["-c", str(concurrency)]
        index = sum(p.name.split("#")[0] == "worker" for p in self.procs) + 1
        node = f"{self.queue}@%h" if index == 1 else f"{self.queue}-{index}@%h"
        proc = self._start("worker", [
            "worker", *pool_args, "-Q", self.queue, "-n", node,
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "--loglevel=INFO"], self.env())
        if wait:
            proc.wait_log("ready.", timeout)
        return proc

    def start_beat(self, scheduler: str = "celery_beatx.Scheduler", wait: bool = True,
                   timeout: float = 30.0, instance_id: str | None = None,
                   ha: bool | None = None, lease_seconds: float | None = None,
                   max_in_flight: int | None = None, **env: str) -> Proc:
        """``celery beat -S <scheduler>``; waits until it has loaded its tasks.

        Several beats may run on the same database: give each its own ``instance_id``
        (``beatx_instance_id``).  ``ha``, ``lease_seconds`` and ``max_in_flight`` set
        ``beatx_ha``, ``beatx_lease_seconds`` and ``beatx_max_in_flight``; left out, the
        app's defaults apply (see :mod:`e2eapp`).
        """
        knobs = {"E2E_INSTANCE_ID": instance_id,
                 "E2E_HA": None if ha is None else ("1" if ha else "0"),
                 "E2E_LEASE_SECONDS": None if lease_seconds is None else str(lease_seconds),
                 "E2E_MAX_IN_FLIGHT": None if max_in_flight is None else str(max_in_flight)}
        env = {**{k: v for k, v in knobs.items() if v is not None}, **env}
        proc = self._start("beat", [
            "beat", "-S", scheduler, "-s", str(self.workdir / "celerybeat-schedule"),
            "--pidfile=", "--loglevel=INFO"], self.env(**env))
        if wait:
            proc.wait_log("beat: loaded", timeout)
        return proc

    def start_embedded(self, scheduler: str = "celery_beatx.Scheduler",
                       option: str = "--scheduler", wait: str | None = "beat: loaded",
                       timeout: float = 30.0, **env: str) -> Proc:
        """A solo-pool worker with embedded beat: ``celery worker -B <option> <scheduler>``.

        ``option`` is how the scheduler is named on the command line: ``--scheduler`` (the
        right one) or ``-S`` (which on ``celery worker`` is ``--statedb``, so the stock
        scheduler runs).  Waits until the log shows ``wait`` (``None``: not at all).
        """
        proc = self._start("embedded", [
            "worker", "-B", option, scheduler,
            "--schedule-filename", str(self.workdir / "celerybeat-schedule"),
            "--pool=solo", "-Q", self.queue, "-n", f"{self.queue}@%h",
            "--without-heartbeat", "--without-gossip", "--without-mingle",
            "--loglevel=INFO"], self.env(**env))
        if wait is not None:
            proc.wait_log(wait, timeout)
        return proc

    # -- markers -------------------------------------------------------------------------

    def markers(self, entry: str | None = None, label: str | None = None) -> list[Marker]:
        """Every marker so far (optionally only one beat entry's, or one label's)."""
        try:
            lines = self.markers_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = [Marker.parse(line) for line in lines if line.strip()]
        if entry is not None:
            out = [m for m in out if m.entry == entry]
        if label is not None:
            out = [m for m in out if m.label == label]
        return out

    def wait_markers(self, count: int, timeout: float, entry: str | None = None,
                     label: str | None = None,
                     where: Callable[[Marker], bool] | None = None) -> list[Marker]:
        """Wait until at least ``count`` matching markers exist; return them."""
        def enough() -> list[Marker] | None:
            found = [m for m in self.markers(entry, label) if where is None or where(m)]
            return found if len(found) >= count else None

        what = f"{count} run(s) of {entry or label or 'any task'} in {self.markers_path}"
        return wait_for(enough, timeout, what)

    # -- teardown ------------------------------------------------------------------------

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def dump_logs(self, tail: int = 150) -> None:
        """Print the last lines of every log (pytest shows them when the test failed)."""
        for proc in self.procs:
            lines = proc.output().splitlines()
            print(f"\n===== {proc.name} (exit {proc.popen.returncode}): "
                  f"{' '.join(proc.argv[3:])}")
            print("\n".join(lines[-tail:]))
        print(f"\n===== markers ({self.markers_path})")
        for marker in self.markers():
            print(marker)


def duplicates(values: Iterable[T]) -> list[T]:
    seen: set[T] = set()
    dups: list[T] = []
    for value in values:
        if value in seen:
            dups.append(value)
        seen.add(value)
    return dups
