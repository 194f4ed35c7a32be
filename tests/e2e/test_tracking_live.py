"""Run tracking (``celery_beatx.track``) with real workers, brokers and databases.

- Beat's sends of a task that succeeds, one that raises and one that sleeps leave runs with
  the right status, error, runtime and worker, with the solo and the prefork pool.
- Celery's own retry (``self.retry()``) of a run: ``retried``, then the same id runs again.
- A message that expired before it started is recorded ``revoked`` (by the prefork parent).
- The same beat message published twice to a prefork worker with 4 processes runs once;
  the second delivery is acknowledged and counted as a duplicate.
- With the worker's database stopped, tasks neither fail nor wait for it (one log line per
  process), and their outcomes are written once it is back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from harness import Cluster, wait_for

from celery_beatx import every

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

UTC = timezone.utc
STACKS = {"solo": ("rabbitmq", "sqlite", None), "prefork": ("redis", "postgresql", 2)}
FINAL = ("succeeded", "failed", "revoked")


@pytest.fixture
def publisher() -> Iterator[Any]:
    """``publish(cluster, run, task, args, **options)``: send a task the way beat does (its
    run's task id and ``beatx_run`` header) from a Celery app of the test's own."""
    from celery import Celery

    apps: dict[str, Any] = {}

    def publish(cluster: Cluster, run: Any, task: str, args: list[Any],
                **options: Any) -> float:
        app = apps.get(cluster.queue)
        if app is None:
            app = apps[cluster.queue] = Celery("publisher", broker=cluster.broker_url,
                                               set_as_current=False)
            app.conf.update(broker_heartbeat=0, broker_connection_retry_on_startup=True,
                            task_default_queue=cluster.queue,
                            task_default_exchange=cluster.queue,
                            task_default_routing_key=cluster.queue)
        header = {"name": run.task_name, "scheduled_at": run.scheduled_at.isoformat(),
                  "attempt": run.attempt, "kind": run.kind}
        # A connection of its own (kombu's producer pools are shared by broker URL).
        with app.connection_for_write() as conn, conn.Producer() as producer:
            sent = time.time()
            app.send_task(task, args=args, task_id=run.task_id,
                          headers={"beatx_run": header}, producer=producer, **options)
        return sent

    yield publish


def runs_of(admin: Any, name: str) -> list[Any]:
    return admin.history(name, limit=1000)


def wait_runs(admin: Any, name: str, count: int, statuses: tuple[str, ...],
              timeout: float) -> list[Any]:
    """Wait until ``name`` has at least ``count`` runs in ``statuses``; return those."""
    def enough() -> list[Any] | None:
        found = [r for r in runs_of(admin, name) if r.status in statuses]
        return found if len(found) >= count else None

    try:
        return wait_for(enough, timeout, f"{count} run(s) of {name} in {statuses}",
                        interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the runs: {runs_of(admin, name)}") from None


@pytest.mark.parametrize("pool", sorted(STACKS))
def test_beat_sends_leave_outcomes(make_cluster, admin_for, pool):
    broker, db, concurrency = STACKS[pool]
    cluster = make_cluster(broker, db)
    admin = admin_for(cluster)
    admin.add("ok", "e2eapp.mark", every(seconds=1), args=["ok"])
    admin.add("boom", "e2eapp.fail", every(seconds=1), args=["boom"])
    admin.add("nap", "e2eapp.sleep", every(seconds=1), args=["nap", 0.6])
    worker = cluster.start_worker(pool=pool, concurrency=concurrency)
    beat = cluster.start_beat()
    wait_runs(admin, "ok", 2, ("succeeded",), 30)
    wait_runs(admin, "boom", 2, ("failed",), 30)
    wait_runs(admin, "nap", 1, ("succeeded",), 30)
    assert beat.stop() == 0
    # What beat sent before it stopped finishes (or was never delivered: stays "sent").
    wait_for(lambda: all(r.status in (*FINAL, "sent") for n in ("ok", "boom", "nap")
                         for r in runs_of(admin, n)), 20, "the last sends to finish")

    for run in runs_of(admin, "ok"):
        if run.status == "sent":
            continue
        assert run.status == "succeeded", run
        assert run.worker and cluster.queue in run.worker, run
        assert run.started_at is not None and run.finished_at >= run.started_at
        assert 0 <= run.runtime < 1.0, run
        assert run.error is None and run.duplicates == 0
    for run in runs_of(admin, "boom"):
        if run.status == "sent":
            continue
        assert run.status == "failed", run
        assert run.error == "ValueError: boom boom", run
        assert run.runtime is not None and run.finished_at is not None
    naps = [r for r in runs_of(admin, "nap") if r.status == "succeeded"]
    assert naps and all(0.6 <= r.runtime < 1.6 for r in naps), naps
    # Each run executed once: one marker per finished run.
    finished = {r.task_id for n in ("ok", "boom", "nap") for r in runs_of(admin, n)
                if r.status in FINAL}
    executed = [m.task_id for m in cluster.markers()]
    assert sorted(executed) == sorted(finished)

    stats = admin.stats("boom")
    assert stats.failed >= 2 and stats.success_rate == 0.0
    assert stats.last_error == "ValueError: boom boom" and stats.last_error_at is not None
    assert admin.stats("ok").success_rate == 1.0
    log = worker.output()
    assert "run tracking waits" not in log and "did not answer" not in log, log[-3000:]


def test_celery_retry_expiry_and_hard_time_limit(make_cluster, admin_for, publisher):
    cluster = make_cluster("redis", "postgresql")
    admin = admin_for(cluster)
    admin.add("flaky", "e2eapp.flaky", every(hours=1), args=["flaky"])
    admin.add("late", "e2eapp.mark", every(hours=1), args=["late"])
    admin.add("slow", "e2eapp.sleep", every(hours=1), args=["slow", 30])
    cluster.start_worker(pool="prefork", concurrency=2)
    flaky = admin.run_now("flaky")
    late = admin.run_now("late")
    slow = admin.run_now("slow")
    publisher(cluster, flaky, "e2eapp.flaky", ["flaky"])
    publisher(cluster, late, "e2eapp.mark", ["late"],
              expires=datetime.now(UTC) - timedelta(seconds=5))
    publisher(cluster, slow, "e2eapp.sleep", ["slow", 30], time_limit=1.5)

    # The first attempt asked Celery to retry: the same task id starts again and succeeds.
    done = wait_runs(admin, "flaky", 1, ("succeeded",), 30)[0]
    attempts = cluster.markers(label="flaky")
    assert [m.task_id for m in attempts] == [flaky.task_id] * 2
    assert done.task_id == flaky.task_id and done.attempt == 0 and done.duplicates == 0
    assert done.started_at.timestamp() > attempts[0].time  # the second attempt's start
    assert done.runtime is not None and done.error is None

    # An expired message is revoked by the worker without running: recorded as such.
    revoked = wait_runs(admin, "late", 1, ("revoked",), 30)[0]
    assert revoked.reason == "expired before it started" and revoked.finished_at is not None
    assert cluster.markers(label="late") == []

    # The child executing it is killed at the hard time limit: the main process reports it.
    killed = wait_runs(admin, "slow", 1, ("failed",), 30)[0]
    assert killed.error.startswith("TimeLimitExceeded") and killed.started_at is not None
    assert killed.reason == "killed at its hard time limit"
    assert len(cluster.markers(label="slow")) == 1


def test_the_same_message_twice_runs_once(make_cluster, admin_for, publisher):
    cluster = make_cluster("rabbitmq", "postgresql")
    admin = admin_for(cluster)
    admin.add("dup", "e2eapp.sleep", every(hours=1), args=["dup", 1.0])
    worker = cluster.start_worker(pool="prefork", concurrency=4)
    run = admin.run_now("dup")
    assert run.status == "pending" and run.kind == "manual"
    publisher(cluster, run, "e2eapp.sleep", ["dup", 1.0])
    publisher(cluster, run, "e2eapp.sleep", ["dup", 1.0])

    worker.wait_log("is a duplicate delivery of a run", 30)
    done = wait_runs(admin, "dup", 1, ("succeeded",), 30)[0]
    assert done.task_id == run.task_id and done.duplicates == 1, done
    time.sleep(1.5)  # had the duplicate run, its marker would be there by now
    markers = cluster.markers(label="dup")
    assert len(markers) == 1, markers
    assert admin.stats("dup").duplicates == 1


def test_a_stopped_database_neither_fails_nor_delays_tasks(make_cluster, admin_for, publisher,
                                                          private_postgres):
    cluster = make_cluster("redis", private_postgres)
    admin = admin_for(cluster)
    admin.add("t", "e2eapp.mark", every(hours=1), args=["t"])
    worker = cluster.start_worker(pool="prefork", concurrency=2)
    first = admin.run_now("t")
    publisher(cluster, first, "e2eapp.mark", ["before"])
    wait_runs(admin, "t", 1, ("succeeded",), 30)

    queued = []
    for _ in range(6):
        time.sleep(0.01)  # distinct run_now instants
        queued.append(admin.run_now("t"))
    admin.engine.dispose()
    private_postgres.stop()
    sent = {run.task_id: publisher(cluster, run, "e2eapp.mark", ["during"]) for run in queued}
    markers = cluster.wait_markers(6, 20, label="during")
    delays = {m.task_id: m.time - sent[m.task_id] for m in markers}
    assert set(delays) == set(sent)
    assert max(delays.values()) < 0.9, delays
    log = worker.output()
    assert "raised unexpected" not in log and "Traceback" not in log, log[-3000:]
    warnings = log.count("the database did not answer")
    assert 1 <= warnings <= 2, log[-3000:]  # once per worker process, not per task

    private_postgres.start()
    done = wait_runs(admin, "t", 7, ("succeeded",), 60)
    assert {r.task_id for r in done} == {first.task_id, *sent}
    for run in done:
        assert run.started_at is not None and run.runtime is not None and run.worker
    wait_for(lambda: "the database answers again" in worker.output(), 30,
             "the worker to log that the database is back")
