"""Add (or update) the demo's API-managed tasks through :class:`celery_beatx.BeatAdmin`.

Idempotent: run it as often as you like; an existing task is updated to this definition.
A running beat picks the change up within ``beatx_sync_interval`` (1 s here)::

    python example_project/add_tasks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_app import app  # noqa: E402

from celery_beatx import BeatAdmin, TaskNotFound, cron, every  # noqa: E402

TASKS = [
    {"name": "greet-every-3s", "task": "demo_app.greet", "schedule": every(seconds=3),
     "args": ["world"], "description": "added through BeatAdmin"},
    {"name": "greet-cron-minutely", "task": "demo_app.greet", "schedule": cron("* * * * *"),
     "args": ["cron"], "kwargs": {"punctuation": "?"},
     "description": "a standard 5-field cron expression"},
]


def main() -> int:
    admin = BeatAdmin(app)
    try:
        for spec in TASKS:
            spec = dict(spec)
            name = spec.pop("name")
            try:
                current = admin.get(name)
            except TaskNotFound:
                info = admin.add(name, spec.pop("task"), spec.pop("schedule"), **spec)
                print(f"added   {name}: {info.schedule!r}, next run {info.next_run_at:%H:%M:%S}")
            else:
                info = admin.update(name, enabled=True, **spec)
                state = "updated" if info.version != current.version else "exists "
                print(f"{state} {name}: {info.schedule!r} (version {info.version})")
    finally:
        admin.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
