"""The Celery app the end-to-end tests run in real ``celery worker`` / ``celery beat`` processes.

Everything is configured through environment variables so each test gets its own broker,
database, queue and marker file (the brokers are shared with other test runs):

``E2E_BROKER_URL``     broker (``amqp://...`` or ``redis://...``)
``E2E_QUEUE``          the only queue used: tasks are sent to it and the worker consumes it
``E2E_MARKERS``        file the ``mark`` task appends one JSON line to per run
``BEATX_DATABASE_URL`` the schedule database (read by celery-beatx itself)
``E2E_SCHEDULE``       JSON ``beat_schedule``: ``{name: {"every": s | "seconds": s |
                       "crontab": minute | "offset": [s, offset] | "slot": n |
                       "relative": s, "args": [...]}}`` (``seconds``: a plain number,
                       which the stock scheduler understands too; ``offset``: a Celery
                       ``schedule`` subclass adding ``offset`` s to each interval;
                       ``slot``: a Celery ``BaseSchedule`` subclass due once per ``n``-second
                       slot of the clock; ``relative``: ``s`` with ``"relative": True``)
``E2E_APPLIED``        file :class:`RecordingScheduler` appends one JSON line to per send
``E2E_SYNC_INTERVAL``  ``beatx_sync_interval`` (default 1)
``E2E_AUTO_MIGRATE``   ``beatx_auto_migrate`` (``0`` turns it off)
``E2E_HISTORY_KEEP``   ``beatx_history_keep`` (default 1000)
``E2E_LEASE_SECONDS``  ``beatx_lease_seconds`` (default 5)
``E2E_INSTANCE_ID``    ``beatx_instance_id`` (unset: celery-beatx's default, ``hostname:pid``)
``E2E_HA``             ``beatx_ha`` (``1`` / ``0``; unset: celery-beatx's default)
``E2E_MAX_IN_FLIGHT``  ``beatx_max_in_flight`` (unset: celery-beatx's default)
``E2E_ALERT_WEBHOOKS`` JSON ``beatx_alert_webhooks`` (unset: none)
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import time
from datetime import timedelta

from celery import Celery
from celery.schedules import BaseSchedule as CeleryBaseSchedule
from celery.schedules import schedstate
from celery.schedules import schedule as celery_schedule

import celery_beatx
from celery_beatx import Scheduler, crontab, every

# A test that times out waiting for a process sends it SIGUSR1: every thread's stack goes to
# its log, so a stall shows where it was.
faulthandler.register(signal.SIGUSR1, all_threads=True)

QUEUE = os.environ.get("E2E_QUEUE", "beatx-e2e")
MARKERS = os.environ.get("E2E_MARKERS", "markers.jsonl")


class OffsetSchedule(celery_schedule):
    """A custom Celery interval: each run ``offset`` seconds after the interval."""

    def __init__(self, run_every: float, offset: float) -> None:
        super().__init__(run_every)
        self.offset = offset

    def remaining_estimate(self, last_run_at):  # type: ignore[no-untyped-def]
        return super().remaining_estimate(last_run_at) + timedelta(seconds=self.offset)

    def __repr__(self) -> str:
        return f"<every {self.run_every.total_seconds():g}s + {self.offset:g}s>"


class SlotSchedule(CeleryBaseSchedule):
    """A Celery ``BaseSchedule`` with only ``is_due``: due once in each ``n``-second slot of
    the clock (as soon as a slot begins), asked again at the next slot."""

    def __init__(self, n: float) -> None:
        super().__init__()
        self.n = n

    def is_due(self, last_run_at):  # type: ignore[no-untyped-def]
        now = self.maybe_make_aware(self.now()).timestamp()
        last = self.maybe_make_aware(last_run_at).timestamp()
        due = now // self.n > last // self.n
        return schedstate(due, self.n - now % self.n)

    def __repr__(self) -> str:
        return f"<once per {self.n:g}s slot>"


def _beat_schedule(raw: str) -> dict[str, dict]:
    schedule: dict[str, dict] = {}
    for name, spec in json.loads(raw).items():
        entry: dict = {"task": "e2eapp.mark", "args": spec.get("args", [name])}
        if "every" in spec:
            entry["schedule"] = every(seconds=spec["every"])
        elif "seconds" in spec:
            entry["schedule"] = float(spec["seconds"])
        elif "offset" in spec:
            entry["schedule"] = OffsetSchedule(*spec["offset"])
        elif "slot" in spec:
            entry["schedule"] = SlotSchedule(spec["slot"])
        elif "relative" in spec:
            entry.update(schedule=float(spec["relative"]), relative=True)
        else:
            entry["schedule"] = crontab(minute=spec["crontab"])
        schedule[name] = entry
    return schedule


class RecordingScheduler(Scheduler):
    """Our scheduler with an ``apply_entry`` override (as integrations such as Sentry's
    patch it): every send it sees is appended to ``E2E_APPLIED``."""

    def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
        line = json.dumps({"name": entry.name, "task_id": entry.options.get("task_id"),
                           "time": time.time()})
        with open(os.environ["E2E_APPLIED"], "a") as out:
            out.write(line + "\n")
        return super().apply_entry(entry, producer=producer)


app = Celery("e2eapp")
app.conf.update(
    broker_url=os.environ.get("E2E_BROKER_URL", "memory://"),
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    # No pidbox: the brokers are shared, and these tests never use remote control.
    worker_enable_remote_control=False,
    worker_prefetch_multiplier=1,
    # With AMQP heartbeats on, the worker's event loop sleeps up to 10 s between checks for
    # a pending warm shutdown; without them SIGTERM stops it at once (faster teardown).
    broker_heartbeat=0,
    timezone="UTC",
    beat_schedule=_beat_schedule(os.environ.get("E2E_SCHEDULE", "{}")),
    beatx_sync_interval=float(os.environ.get("E2E_SYNC_INTERVAL", "1")),
    beatx_auto_migrate=os.environ.get("E2E_AUTO_MIGRATE", "1") != "0",
    beatx_history_keep=int(os.environ.get("E2E_HISTORY_KEEP", "1000")),
    # A short lease: a beat restarted after a crash waits at most this long for the dead
    # one's lease, and the fault tests see a takeover quickly.
    beatx_lease_seconds=float(os.environ.get("E2E_LEASE_SECONDS", "5")),
)
# Left unset unless a test asks, so that celery-beatx's own defaults are what is tested.
if os.environ.get("E2E_INSTANCE_ID"):
    app.conf.beatx_instance_id = os.environ["E2E_INSTANCE_ID"]
if os.environ.get("E2E_HA"):
    app.conf.beatx_ha = os.environ["E2E_HA"] not in ("0", "false", "False", "no")
if os.environ.get("E2E_ALERT_WEBHOOKS"):
    app.conf.beatx_alert_webhooks = json.loads(os.environ["E2E_ALERT_WEBHOOKS"])
if os.environ.get("E2E_MAX_IN_FLIGHT"):
    app.conf.beatx_max_in_flight = int(os.environ["E2E_MAX_IN_FLIGHT"])

if hasattr(celery_beatx, "track"):  # the worker-side run tracking hook, once it exists
    celery_beatx.track(app)


@app.task(bind=True, name="e2eapp.mark")
def mark(self, label: str, *extra: object) -> str:
    """Append ``{"task_id", "task", "label", "time", "beatx_run"}`` to the marker file."""
    run = getattr(self.request, "beatx_run", None)
    if run is None and isinstance(self.request.headers, dict):
        run = self.request.headers.get("beatx_run")
    line = json.dumps({"task_id": self.request.id, "task": self.name, "label": label,
                       "extra": list(extra), "time": time.time(), "beatx_run": run})
    fd = os.open(MARKERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return label


def _append_marker(task, label: str, extra: tuple) -> None:
    run = getattr(task.request, "beatx_run", None)
    if run is None and isinstance(task.request.headers, dict):
        run = task.request.headers.get("beatx_run")
    line = json.dumps({"task_id": task.request.id, "task": task.name, "label": label,
                       "extra": list(extra), "time": time.time(), "beatx_run": run,
                       "retries": task.request.retries, "pid": os.getpid()})
    fd = os.open(MARKERS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@app.task(bind=True, name="e2eapp.fail")
def fail(self, label: str, *extra: object) -> None:
    """Mark, then raise ``ValueError("boom <label>")``."""
    _append_marker(self, label, extra)
    raise ValueError(f"boom {label}")


@app.task(bind=True, name="e2eapp.sleep")
def sleep(self, label: str, seconds: float = 1.0, *extra: object) -> str:
    """Mark, then sleep ``seconds``."""
    _append_marker(self, label, (seconds, *extra))
    time.sleep(seconds)
    return label


@app.task(bind=True, name="e2eapp.flaky", max_retries=3)
def flaky(self, label: str, *extra: object) -> str:
    """Mark; the first attempt asks Celery to retry (after 0.3 s), the next one succeeds."""
    _append_marker(self, label, extra)
    if self.request.retries == 0:
        raise self.retry(countdown=0.3, exc=RuntimeError(f"first try of {label} fails"))
    return label
