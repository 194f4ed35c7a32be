"""Run tracking in one process, against real SQLite, PostgreSQL and MariaDB.

Tasks are executed with Celery's own tracer (``task.apply``: the same ``before_start`` and
signals a worker runs) with the ``beatx_run`` header beat sends; the worker-process parts
(prefork, a database stopped under a worker) are in ``tests/e2e/test_tracking_live.py``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, Task, shared_task
from celery.exceptions import Retry

import celery_beatx
from celery_beatx import every, tracking
from celery_beatx.admin import BeatAdmin
from celery_beatx.tracking import ERROR_MAX, TrackedTask, Tracker, error_text


def make_app(url: str, **conf: Any) -> Celery:
    app = Celery(f"tracked-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.conf.update(beatx_database_url=url, task_always_eager=False, **conf)
    return app


def header(run: Any) -> dict[str, Any]:
    return {"beatx_run": {"name": run.task_name, "scheduled_at": run.scheduled_at.isoformat(),
                          "attempt": run.attempt, "kind": run.kind}}


def dispose(app: Celery) -> None:
    tracker = getattr(app, "_beatx_tracker", None)
    if tracker is not None:
        tracker.close()


@pytest.fixture
def tracked(db_url: str) -> Iterator[Celery]:
    """A tracked app on the test database with three tasks."""
    app = make_app(db_url)
    celery_beatx.track(app)
    calls: list[str] = []

    @app.task(bind=True, shared=False, name="t.ok")
    def ok(self: Task, label: str) -> str:
        calls.append(label)
        return label

    @app.task(bind=True, shared=False, name="t.boom")
    def boom(self: Task, size: int) -> None:
        calls.append("boom")
        raise ValueError("x" * size)

    app.calls = calls  # type: ignore[attr-defined]
    app.finalize()
    yield app
    dispose(app)


@pytest.fixture
def queued(db_url: str, clock: Any) -> Iterator[Any]:
    """``queued(name)`` -> a pending run of task ``name`` (``run_now``), as beat records it."""
    admin = BeatAdmin(url=db_url, clock=clock)

    def make(name: str = "job") -> Any:
        try:
            admin.get(name)
        except celery_beatx.TaskNotFound:
            admin.add(name, "t.ok", every(hours=1))
        clock.advance(seconds=1)
        return admin.run_now(name)

    make.admin = admin  # type: ignore[attr-defined]
    yield make
    admin.engine.dispose()


def run_row(admin: BeatAdmin, task_id: str) -> Any:
    with admin._tx(readonly=True) as session:
        return admin.repo.get_run(session, task_id)


def test_a_run_succeeds_then_a_second_delivery_is_not_run(tracked, queued):
    run = queued()
    result = tracked.tasks["t.ok"].apply(["first"], task_id=run.task_id, headers=header(run))
    assert result.state == "SUCCESS"
    again = tracked.tasks["t.ok"].apply(["second"], task_id=run.task_id, headers=header(run))
    assert again.state == "IGNORED"
    assert tracked.calls == ["first"]  # the duplicate never ran
    tracked._beatx_tracker.flush()
    row = run_row(queued.admin, run.task_id)
    assert row.status == "succeeded" and row.duplicates == 1
    assert row.started_at is not None and row.finished_at >= row.started_at
    assert 0 <= row.runtime < 1 and row.worker and row.error is None
    # Started before beat confirmed the publish (the run was still pending): sent by then.
    assert row.sent_at == row.started_at


def test_a_failure_keeps_the_error_type_and_message_within_bounds(tracked, queued):
    short, long = queued(), queued()
    tracked.tasks["t.boom"].apply([5], task_id=short.task_id, headers=header(short))
    tracked.tasks["t.boom"].apply([50_000], task_id=long.task_id, headers=header(long))
    tracked._beatx_tracker.flush()
    first = run_row(queued.admin, short.task_id)
    assert (first.status, first.error) == ("failed", "ValueError: xxxxx")
    assert first.runtime is not None and first.finished_at is not None
    second = run_row(queued.admin, long.task_id)
    assert second.status == "failed" and len(second.error) == ERROR_MAX
    assert second.error.startswith("ValueError: xxx") and second.error.endswith("\u2026")


def test_a_celery_retry_is_recorded_and_the_same_id_may_start_again(db_url, queued):
    """Celery's ``self.retry()`` (eager mode retries inline, so the worker's sequence is
    driven here: the e2e test runs it in a real worker)."""
    run = queued()
    tracker = Tracker(make_app(db_url))
    try:
        assert tracker.start(request(run.task_id))
        tracker.finish(run.task_id, "RETRY", Retry(exc=RuntimeError("later")))
        tracker.flush()
        row = run_row(queued.admin, run.task_id)
        assert row.status == "retried" and row.error == "RuntimeError: later"
        assert row.reason.startswith("Celery retry")
        assert tracker.start(request(run.task_id, retries=1))  # the retry message
        tracker.finish(run.task_id, "SUCCESS", "done")
        tracker.flush()
        row = run_row(queued.admin, run.task_id)
        assert (row.status, row.error, row.duplicates) == ("succeeded", None, 0)
    finally:
        dispose_tracker(tracker)


def test_tasks_not_sent_by_beat_are_not_touched(tracked, queued):
    run = queued()
    assert tracked.tasks["t.ok"].apply(["plain"], task_id=run.task_id).state == "SUCCESS"
    unknown = str(uuid.uuid4())  # a beatx header, but no run of that id: runs, untracked
    fake = SimpleNamespace(task_name="x", scheduled_at=run.scheduled_at, attempt=0,
                           kind="manual")
    assert tracked.tasks["t.ok"].apply(["stray"], task_id=unknown,
                                       headers=header(fake)).state == "SUCCESS"
    tracked._beatx_tracker.flush()
    assert run_row(queued.admin, run.task_id).status == "pending"
    assert run_row(queued.admin, unknown) is None
    assert tracked.calls == ["plain", "stray"]


def request(task_id: str, retries: int = 0, worker: str = "w1@host") -> SimpleNamespace:
    return SimpleNamespace(id=task_id, hostname=worker, retries=retries, delivery_info={})


def test_an_outcome_of_an_earlier_delivery_never_overwrites_a_later_one(db_url, queued):
    """Two worker processes: the first attempt's late ``retried`` outcome arrives after the
    retry (same id) started in another process; the run ends as the retry ended."""
    run = queued()
    one, two = make_app(db_url), make_app(db_url)
    try:
        first, second = Tracker(one), Tracker(two)
        assert first.start(request(run.task_id))
        assert second.start(request(run.task_id, retries=1, worker="w2@host"))
        first.finish(run.task_id, "RETRY", Retry(exc=RuntimeError("later")))
        first.flush()
        row = run_row(queued.admin, run.task_id)
        assert (row.status, row.worker) == ("started", "w2@host")
        second.finish(run.task_id, "SUCCESS", "done")
        second.flush()
        assert run_row(queued.admin, run.task_id).status == "succeeded"
    finally:
        dispose_tracker(first)
        dispose_tracker(second)


def dispose_tracker(tracker: Tracker) -> None:
    tracker.close()


def test_concurrent_deliveries_start_one_run(db_url, queued):
    """Eight "processes" start the same run at once: exactly one wins."""
    run = queued()
    trackers = [Tracker(make_app(db_url)) for _ in range(8)]
    barrier = threading.Barrier(len(trackers))
    results: list[bool] = []

    def deliver(tracker: Tracker) -> None:
        barrier.wait()
        results.append(tracker.start(request(run.task_id)))

    threads = [threading.Thread(target=deliver, args=(t,)) for t in trackers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert sorted(results) == [False] * 7 + [True]
        row = run_row(queued.admin, run.task_id)
        assert row.status == "started" and row.duplicates == 7
    finally:
        for tracker in trackers:
            dispose_tracker(tracker)


def test_a_revoked_run(db_url, queued):
    run = queued()
    tracker = Tracker(make_app(db_url))
    try:
        tracker.revoked(run.task_id, "expired before it started")
        tracker.flush()
        row = run_row(queued.admin, run.task_id)
        assert (row.status, row.reason) == ("revoked", "expired before it started")
    finally:
        dispose_tracker(tracker)


def test_a_lost_process_or_hard_time_limit_fails_the_started_run(db_url, queued):
    from celery.exceptions import TimeLimitExceeded, WorkerLostError

    killed, lost, other = queued(), queued(), queued()
    child, parent = Tracker(make_app(db_url)), Tracker(make_app(db_url))
    try:
        assert child.start(request(killed.task_id)) and child.start(request(lost.task_id))
        parent.lost(killed.task_id, TimeLimitExceeded(1.5))
        parent.lost(lost.task_id, WorkerLostError("Worker exited prematurely: signal 9"))
        parent.lost(str(uuid.uuid4()), WorkerLostError("not a run"))
        parent.flush()
        first, second = (run_row(queued.admin, r.task_id) for r in (killed, lost))
        assert (first.status, first.reason) == ("failed", "killed at its hard time limit")
        assert first.error.startswith("TimeLimitExceeded: ") and "1.5" in first.error
        assert (second.status, second.reason) == (
            "failed", "the worker process executing it was lost")
        assert second.error == "WorkerLostError: Worker exited prematurely: signal 9"
        assert run_row(queued.admin, other.task_id).status == "pending"
    finally:
        dispose_tracker(child)
        dispose_tracker(parent)


# -- the database is missing, unreachable or slow ------------------------------------------

def test_no_database_file_is_created_and_tasks_run(tmp_path, caplog):
    path = tmp_path / "nowhere.sqlite3"
    tracker = Tracker(make_app(f"sqlite:///{path}"))
    with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
        for _ in range(3):
            assert tracker.start(request(str(uuid.uuid4())))
    assert not path.exists()
    waits = [r for r in caplog.records if "run tracking waits" in r.getMessage()]
    assert len(waits) == 1 and "no database file" in waits[0].getMessage()


def test_a_database_without_the_schema_is_not_migrated(tmp_path, caplog):
    import sqlalchemy as sa

    path = tmp_path / "empty.sqlite3"
    sa.create_engine(f"sqlite:///{path}").connect().close()  # an empty file
    tracker = Tracker(make_app(f"sqlite:///{path}"))
    try:
        with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
            assert tracker.start(request(str(uuid.uuid4())))
        engine = sa.create_engine(f"sqlite:///{path}")
        assert sa.inspect(engine).get_table_names() == []
        engine.dispose()
        assert any("no celery-beatx schema" in r.getMessage() for r in caplog.records)
    finally:
        dispose_tracker(tracker)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_database_neither_fails_nor_delays_tasks(caplog):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nothing"
    tracker = Tracker(make_app(url))
    tracker._schema_ok = True  # it was there when the worker started
    try:
        with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
            began = time.monotonic()
            for _ in range(20):
                assert tracker.start(request(str(uuid.uuid4())))
                tracker.finish(list(tracker.started)[-1], "SUCCESS", None)
            took = time.monotonic() - began
        assert took < 1.0, took
        lines = [r for r in caplog.records if "did not answer" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        assert tracker.down and tracker._writer is not None
    finally:
        tracker.flush(0.1)


def test_a_database_that_hangs_costs_at_most_the_timeout_once():
    """A server that accepts connections and never answers: the first start waits
    ``beatx_track_timeout``, the next ones do not wait at all."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # never accepted: the client waits for a greeting that never comes
    port = server.getsockname()[1]
    tracker = Tracker(make_app(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x",
                               beatx_track_timeout=0.3))
    tracker._schema_ok = True
    try:
        began = time.monotonic()
        assert tracker.start(request(str(uuid.uuid4())))
        first = time.monotonic() - began
        assert 0.25 <= first < 1.0, first
        began = time.monotonic()
        for _ in range(10):
            assert tracker.start(request(str(uuid.uuid4())))
        assert time.monotonic() - began < 0.2
    finally:
        server.close()


def test_a_full_queue_drops_outcomes_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(tracking, "QUEUE_MAX", 5)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nothing"
    tracker = Tracker(make_app(url))
    tracker._schema_ok = True
    with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
        for _ in range(30):
            task_id = str(uuid.uuid4())
            tracker.start(request(task_id))
            tracker.finish(task_id, "SUCCESS", None)
    assert tracker.dropped > 0
    full = [r for r in caplog.records if "newer ones are dropped" in r.getMessage()]
    assert len(full) == 1


# -- set-up ----------------------------------------------------------------------------------

def test_track_makes_tracked_task_the_base_of_app_and_shared_tasks(tmp_path):
    app = Celery("setup-test", set_as_current=False)
    celery_beatx.track(app)
    celery_beatx.track(app)  # twice: nothing more

    @app.task(name="s.one", shared=False)
    def one() -> None: ...

    @shared_task(name="s.shared")
    def shared() -> None: ...

    app.finalize()
    assert isinstance(app.tasks["s.one"], TrackedTask)
    assert isinstance(app.tasks["s.shared"], TrackedTask)


def test_an_app_with_its_own_task_class_is_told_to_inherit(caplog):
    class Mine(Task):  # type: ignore[misc]
        pass

    class Good(TrackedTask):
        pass

    app = Celery("own-base", task_cls=Mine, set_as_current=False)
    with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
        celery_beatx.track(app)
    assert app.task_cls is Mine
    assert any("does not inherit celery_beatx.TrackedTask" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    good = Celery("good-base", task_cls=Good, set_as_current=False)
    with caplog.at_level(logging.WARNING, "celery_beatx.tracking"):
        celery_beatx.track(good)
    assert good.task_cls is Good and not caplog.records


def test_beatx_track_results_false_makes_track_a_no_op(caplog):
    app = Celery("off", set_as_current=False)
    app.conf.beatx_track_results = False
    app.conf.broker_url = "memory://"
    _ = app.conf.broker_url  # the app is configured
    with caplog.at_level(logging.INFO, "celery_beatx.tracking"):
        celery_beatx.track(app)
    assert getattr(app, "_beatx_tracker", None) is None
    assert app.task_cls == "celery.app.task:Task" or app.task_cls is Task
    assert [r.getMessage() for r in caplog.records] == [
        "celery-beatx: run tracking is off (beatx_track_results = False)"]


def test_beatx_track_results_false_read_later_turns_tracking_off(db_url, queued, caplog):
    app = make_app(db_url)
    celery_beatx.track(app)  # not configured yet: the setting is read when tasks run
    app.conf.beatx_track_results = False

    @app.task(name="late.ok", shared=False)
    def ok() -> str:
        return "ok"

    app.finalize()
    run = queued()
    with caplog.at_level(logging.INFO, "celery_beatx.tracking"):
        for _ in range(2):
            app.tasks["late.ok"].apply(task_id=run.task_id, headers=header(run))
    assert run_row(queued.admin, run.task_id).status == "pending"
    offs = [r for r in caplog.records if "run tracking is off" in r.getMessage()]
    assert len(offs) == 1


def test_error_text():
    assert error_text(KeyError("k")) == "KeyError: 'k'"
    assert error_text(ValueError()) == "ValueError"

    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert error_text(Weird()).startswith("Weird: <")
    assert len(error_text(ValueError("y" * 10_000))) == ERROR_MAX


def test_the_worker_never_creates_the_default_database(tmp_path, monkeypatch):
    """Without a URL the worker looks where beat's default is, and creates nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BEATX_DATABASE_URL", raising=False)
    tracker = Tracker(Celery("defaults", set_as_current=False))
    assert tracker.start(request(str(uuid.uuid4())))
    assert os.listdir(tmp_path) == []


def test_many_outcomes_at_once_are_written_together(db_url, queued):
    """Outcomes queued together share one transaction (one executemany per kind)."""
    runs = [queued() for _ in range(12)]
    tracker = Tracker(make_app(db_url))
    try:
        for run in runs[:8]:
            assert tracker.start(request(run.task_id))
        for i, run in enumerate(runs[:8]):
            tracker.finish(run.task_id, "SUCCESS" if i % 2 else "FAILURE", ValueError(i))
        for run in runs[8:]:
            tracker.revoked(run.task_id, "revoked")
        tracker.flush()
        rows = [run_row(queued.admin, run.task_id) for run in runs]
        assert [r.status for r in rows] == ["failed", "succeeded"] * 4 + ["revoked"] * 4
        assert [r.error for r in rows[:2]] == ["ValueError: 0", None]
    finally:
        dispose_tracker(tracker)
