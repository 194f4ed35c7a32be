"""The example project's Celery app: ``celery -A demo_app worker`` / ``beat -S beatx``.

Runs with no server at all by default: kombu's ``sqla+sqlite`` transport is the broker and
celery-beatx keeps its schedules in SQLite, both under ``example_project/var/``.  Set
``BROKER_URL`` (``amqp://...``, ``redis://...``) and ``BEATX_DATABASE_URL``
(``postgresql+psycopg://...``) to run the same demo on real servers; ``DEMO_VAR_DIR`` moves
the ``var/`` directory and ``DEMO_QUEUE`` renames the queue (default ``beatx-demo``).

Every task appends one line to ``var/fired.log``; ``run_demo.py`` tails that file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import crontab as celery_crontab

from celery_beatx import every

HERE = Path(__file__).resolve().parent
VAR = Path(os.environ.get("DEMO_VAR_DIR") or HERE / "var").resolve()
VAR.mkdir(parents=True, exist_ok=True)
FIRED_LOG = VAR / "fired.log"

BROKER_URL = os.environ.get("BROKER_URL") or f"sqla+sqlite:///{VAR / 'broker.sqlite3'}"
DATABASE_URL = os.environ.get("BEATX_DATABASE_URL") or f"sqlite:///{VAR / 'beatx.sqlite3'}"

logger = logging.getLogger("demo_app")

app = Celery("demo_app")
app.conf.update(
    broker_url=BROKER_URL,
    broker_connection_retry_on_startup=True,
    task_default_queue=os.environ.get("DEMO_QUEUE") or "beatx-demo",
    timezone="UTC",
    worker_prefetch_multiplier=1,
    # celery-beatx settings (see README.rst, "Configuration").
    beatx_database_url=DATABASE_URL,
    beatx_sync_interval=1.0,
    # Schedules defined in code are synced into the database when beat starts.  Celery's own
    # schedule objects work, and so do celery-beatx's (every, crontab, cron, ...).
    beat_schedule={
        "heartbeat": {
            "task": "demo_app.heartbeat",
            "schedule": every(seconds=5),
        },
        "minute-report": {
            "task": "demo_app.report",
            "schedule": celery_crontab(minute="*"),
            "args": ("minute report",),
        },
    },
)


def record(task: Any, detail: str = "") -> None:
    """Append ``<unix time> <schedule entry> <task id> <detail>`` to ``var/fired.log``.

    celery-beatx sends each run with a ``beatx_run`` header naming the schedule entry and
    the scheduled time; its task id is derived from both, so a duplicate is detectable.
    """
    run = getattr(task.request, "beatx_run", None) or {}
    entry = run.get("name") or task.name
    line = f"{time.time():.3f} {entry} {task.request.id} {detail}".rstrip() + "\n"
    with open(FIRED_LOG, "a", encoding="utf-8") as out:
        out.write(line)


@app.task(bind=True, name="demo_app.heartbeat")
def heartbeat(self) -> str:
    """Runs every 5 seconds (``beat_schedule``)."""
    logger.info("heartbeat")
    record(self)
    return "ok"


@app.task(bind=True, name="demo_app.report")
def report(self, title: str) -> str:
    """Runs at the start of every minute (``beat_schedule``, celery's crontab)."""
    logger.info("report: %s", title)
    record(self, title)
    return title


@app.task(bind=True, name="demo_app.greet")
def greet(self, who: str, punctuation: str = "!") -> str:
    """Added through the admin API by ``add_tasks.py``."""
    message = f"hello {who}{punctuation}"
    logger.info(message)
    record(self, message)
    return message
