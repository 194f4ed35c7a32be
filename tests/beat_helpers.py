"""Helpers for in-process scheduler tests: a Celery app on real Redis, queue draining."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from celery import Celery
from kombu import Connection

from celery_beatx.scheduler import Scheduler
from celery_beatx.store.models import Run
from dbs import unreachable

REDIS = os.environ.get("BEATX_TEST_REDIS", "redis://127.0.0.1:6379/3")


@pytest.fixture
def queue_name() -> str:
    return f"beatx-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(db_url, queue_name):
    app = Celery("beatx_test", broker=REDIS, set_as_current=False)
    app.conf.update(beatx_database_url=db_url, task_default_queue=queue_name,
                    beatx_sync_interval=1.0, result_expires=None, timezone="UTC")
    try:
        with Connection(REDIS) as conn:
            conn.ensure_connection(max_retries=1)
            conn.SimpleQueue(queue_name).close()  # declare so messages are kept
    except Exception as exc:  # noqa: BLE001
        unreachable("redis", exc)
    yield app
    with Connection(REDIS) as conn:
        conn.SimpleQueue(queue_name).queue.delete()


def drain(queue_name: str) -> list[dict]:
    """Every message waiting in the queue, decoded (headers + body)."""
    out = []
    with Connection(REDIS) as conn:
        q = conn.SimpleQueue(queue_name)
        while True:
            try:
                msg = q.get(timeout=0.2)
            except q.Empty:
                break
            args, kwargs, _ = msg.decode()
            out.append({"headers": msg.headers, "args": args, "kwargs": kwargs,
                        "properties": msg.properties})
            msg.ack()
        q.close()
    return out


def make(app, clock, **kw) -> Scheduler:
    return Scheduler(app, clock=clock, **kw)


def runs(db_url) -> list[Run]:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Run.task_name, Run.task_id, Run.scheduled_at,
                                      Run.status, Run.instance_id, Run.kind)
                            .order_by(Run.id)).all()
    engine.dispose()
    return rows
