"""The Celery app the end-to-end tests run in real ``celery worker`` / ``celery beat`` processes.

Everything is configured through environment variables so each test gets its own broker,
database, queue and marker file (the brokers are shared with other test runs):

``E2E_BROKER_URL``     broker (``amqp://...`` or ``redis://...``)
``E2E_QUEUE``          the only queue used: tasks are sent to it and the worker consumes it
``E2E_MARKERS``        file the ``mark`` task appends one JSON line to per run
``BEATX_DATABASE_URL`` the schedule database (read by celery-beatx itself)
``E2E_SCHEDULE``       JSON ``beat_schedule``: ``{name: {"every": s | "seconds": s |
                       "crontab": minute, "args": [...]}}`` (``seconds``: a plain number,
                       which the stock scheduler understands too)
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

import json
import os
import time

from celery import Celery

import celery_beatx
from celery_beatx import crontab, every

QUEUE = os.environ.get("E2E_QUEUE", "beatx-e2e")
MARKERS = os.environ.get("E2E_MARKERS", "markers.jsonl")


def _beat_schedule(raw: str) -> dict[str, dict]:
    schedule: dict[str, dict] = {}
    for name, spec in json.loads(raw).items():
        if "every" in spec:
            sched = every(seconds=spec["every"])
        elif "seconds" in spec:
            sched = float(spec["seconds"])
        else:
            sched = crontab(minute=spec["crontab"])
        schedule[name] = {"task": "e2eapp.mark", "schedule": sched,
                          "args": spec.get("args", [name])}
    return schedule


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


@app.task(name="e2eapp.fail")
def fail(label: str, *extra: object) -> None:
    """Always raises (the alert tests count its failures)."""
    raise ValueError(f"{label} failed on purpose")
