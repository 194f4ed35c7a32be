"""The send path under faults, in process: real databases, real Redis, injected clock.

Faults are injected at the database (SQLAlchemy engine events that fail a statement or a
commit once), in the stored rows (values written by hand), and in the clock; the end-to-end
outage tests with real services stopped live in tests/e2e.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from beat_helpers import REDIS, drain, make, runs
from celery_beatx import BeatAdmin, every
from celery_beatx.scheduler import Scheduler, run_task_id
from celery_beatx.store.models import Lock, Run, Task
from dbs import unreachable


@pytest.fixture
def admin(db_url, clock):
    adm = BeatAdmin(url=db_url, clock=clock)
    yield adm
    adm.engine.dispose()


def write(db_url: str, stmt) -> None:  # type: ignore[no-untyped-def]
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(stmt)
    engine.dispose()


def fail_once(engine, when, error=None):  # type: ignore[no-untyped-def]
    """Make the first statement for which ``when(statement)`` is true raise."""
    state = {"armed": True}

    @event.listens_for(engine, "before_cursor_execute")
    def _fail(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if state["armed"] and when(statement):
            state["armed"] = False
            raise error or sa.exc.OperationalError(statement, params, Exception("injected"))

    return state


# -- one broken task never stops beat ------------------------------------------------------

def test_a_row_with_bad_headers_fails_that_task_only(app, admin, db_url, clock, queue_name):
    admin.add("good", "proj.good", every(seconds=10))
    admin.add("hdr", "proj.hdr", every(seconds=10))
    # written behind the admin API's back (a hand edit, an older release, another tool)
    write(db_url, sa.update(Task).where(Task.name == "hdr").values(headers=["x"]))
    beat = make(app, clock)
    for _ in range(3):
        clock.advance(seconds=10)
        beat.tick()
    beat.close()
    sent = [m["headers"]["task"] for m in drain(queue_name)]
    assert sent == ["proj.good"] * 3
    info = admin.get("hdr")
    assert "headers" in info.invalid_reason
    assert [a.kind for a in admin.alerts()] == ["invalid_schedule"]
    make(app, clock).close()  # and beat starts again


def test_a_send_that_raises_fails_that_run_only(app, admin, db_url, clock, queue_name):
    class Picky(Scheduler):
        def send_task(self, name=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "proj.bad":
                raise ValueError("refused by a subclass")
            return super().send_task(name, *args, **kwargs)

    admin.add("bad", "proj.bad", every(seconds=10))
    admin.add("ok", "proj.ok", every(seconds=10))
    beat = Picky(app, clock=clock)
    clock.advance(seconds=10)
    beat.tick()
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.ok", "proj.ok"]
    statuses = sorted((r.task_name, r.status) for r in runs(db_url))
    assert statuses == [("bad", "send_failed")] * 2 + [("ok", "sent")] * 2


def test_apply_entry_overrides_see_every_send(app, admin, clock, queue_name):
    seen = []

    class Watching(Scheduler):
        def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
            seen.append((entry.name, entry.options["task_id"]))
            return super().apply_entry(entry, producer=producer)

    admin.add_many([{"name": f"t{i}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(3)])
    beat = Watching(app, clock=clock)
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    ids = sorted(m["headers"]["id"] for m in drain(queue_name))
    assert sorted(tid for _, tid in seen) == ids and len(ids) == 3
    assert {n for n, _ in seen} == {"t0", "t1", "t2"}


def test_a_published_run_is_marked_sent_at_the_confirm_unless_it_moved_on(
        app, admin, db_url, clock, queue_name):
    """Each published run is marked ``sent`` with the time of the confirm; a run whose
    worker already recorded a later status keeps it."""
    admin.add_many([{"name": f"t{i}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(3)])
    engine = sa.create_engine(db_url)

    class Racing(Scheduler):
        def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
            done = super().apply_entry(entry, producer=producer)
            if entry.name == "t1":  # its worker was faster than beat's confirm
                with engine.begin() as conn:
                    conn.execute(sa.update(Run).where(Run.task_id == entry.options["task_id"])
                                 .values(status="started"))
            return done

    beat = Racing(app, clock=clock)
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    with engine.connect() as conn:
        rows = {r.task_name: r for r in conn.execute(
            sa.select(Run.task_name, Run.status, Run.sent_at))}
    engine.dispose()
    assert len(drain(queue_name)) == 3
    assert {n: r.status for n, r in rows.items()} == {
        "t0": "sent", "t1": "started", "t2": "sent"}
    assert rows["t0"].sent_at == rows["t2"].sent_at == clock.now
    assert rows["t1"].sent_at is None


AMQP = os.environ.get("BEATX_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.mark.parametrize("broker", [AMQP, REDIS], ids=["rabbitmq", "redis"])
def test_the_queue_is_declared_once_per_connection_not_once_per_message(
        admin, db_url, clock, queue_name, broker, monkeypatch):
    """Celery asks kombu to declare the task's queue with every message; beat's producer
    lets the first declaration through (RabbitMQ drops messages to a queue that does not
    exist) and answers the rest from kombu's cache of what this connection declared."""
    from celery import Celery
    from kombu import Connection
    from kombu.entity import Queue

    app = Celery("beatx_declare", broker=broker, set_as_current=False)
    app.conf.update(beatx_database_url=db_url, task_default_queue=queue_name,
                    beatx_sync_interval=1.0, timezone="UTC")
    try:
        with Connection(broker) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        unreachable(broker.split(":")[0], exc)
    binds = {"n": 0}
    bind = Queue.bind

    def counting_bind(self, channel):  # type: ignore[no-untyped-def]
        binds["n"] += 1
        return bind(self, channel)

    monkeypatch.setattr(Queue, "bind", counting_bind)
    admin.add_many([{"name": f"t{i}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(20)])
    beat = make(app, clock)
    try:
        clock.advance(seconds=5)
        beat.tick()
    finally:
        beat.close()
    assert sorted(r.status for r in runs(db_url)) == ["sent"] * 20
    assert binds["n"] <= 2, binds  # the first declaration (kombu binds a copy), not 20
    # The queue was declared by beat (it did not exist before): every message is there.
    with Connection(broker) as conn:
        queue = conn.SimpleQueue(queue_name)
        try:
            got = []
            for _ in range(20):
                got.append(queue.get(timeout=5).headers["id"])
            assert len(set(got)) == 20
        finally:
            queue.close()
            channel = conn.channel()
            Queue(queue_name)(channel).delete()
            channel.close()


def test_a_producer_given_to_the_scheduler_is_used_as_it_is(app, admin, clock, queue_name):
    """``Scheduler(Producer=...)`` (Celery's argument): a class with its own
    ``maybe_declare`` sees every declaration, and a factory that is not a class works."""
    import functools

    from kombu import Producer

    asked = []

    class Counting(Producer):
        def maybe_declare(self, entity, retry=False, **policy):  # type: ignore[no-untyped-def]
            asked.append(entity.name)
            return super().maybe_declare(entity, retry, **policy)

    admin.add_many([{"name": f"t{i}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(5)])
    beat = make(app, clock, Producer=Counting)
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    assert asked == [queue_name] * 5
    beat = make(app, clock, Producer=functools.partial(Producer))
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 10


@pytest.mark.parametrize("column, value", [
    ("args", "[1"),               # truncated JSON
    ("kwargs", "{not json"),
    ("schedule", "}}"),
    ("next_run_at", "yesterday"),  # not a time
])
def test_an_undecodable_row_is_that_task_s_problem_only(app, admin, db_url, clock, queue_name,
                                                        column, value):
    if not db_url.startswith("sqlite"):
        pytest.skip("only SQLite stores text that is not JSON or a time in these columns")
    admin.add("good", "proj.good", every(seconds=10))
    admin.add("broken", "proj.broken", every(seconds=10))
    beat = make(app, clock)  # running while the row goes bad: the change feed sees it
    write(db_url, sa.text(f"UPDATE beatx_tasks SET {column} = :v, revision = revision + 100 "
                          "WHERE name = 'broken'").bindparams(v=value))
    write(db_url, sa.text("UPDATE beatx_counters SET value = value + 100"))
    clock.advance(seconds=10)
    beat.tick()
    listed = {t.name: t for t in admin.list()}  # listing works
    assert listed["good"].invalid_reason is None
    beat.close()
    restarted = make(app, clock)  # and so does a start
    clock.advance(seconds=10)
    restarted.tick()
    restarted.close()
    assert [m["headers"]["task"] for m in drain(queue_name)].count("proj.good") == 2
    if column != "next_run_at":  # a bad next run time is simply computed again
        assert listed["broken"].invalid_reason and column in listed["broken"].invalid_reason \
            or column == "schedule"
        assert "proj.broken" not in [m["headers"]["task"] for m in drain(queue_name)]


def test_a_row_of_the_wrong_shape_is_marked_invalid_on_every_database(
        app, admin, db_url, clock, queue_name):
    admin.add("good", "proj.good", every(seconds=10))
    admin.add("odd", "proj.odd", every(seconds=10))
    write(db_url, sa.update(Task).where(Task.name == "odd").values(args={"not": "a list"}))
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.good"]
    assert "args" in admin.get("odd").invalid_reason


# -- database faults -------------------------------------------------------------------------

def test_a_commit_that_raised_after_committing_is_resolved_before_sending(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    armed = {"on": True}
    # The first commit of a transaction that inserted runs commits, then "the driver" raises.
    inserted = {"yes": False}

    @event.listens_for(beat.engine, "after_cursor_execute")
    def _mark(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO beatx_runs"):
            inserted["yes"] = True

    @event.listens_for(beat.engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        if inserted["yes"] and armed["on"]:
            armed["on"] = False
            inserted["yes"] = False
            conn.connection.dbapi_connection.commit()  # it did commit...
            raise sa.exc.OperationalError("COMMIT", {}, Exception("connection reset"))

    clock.advance(seconds=10)
    beat.tick()  # the record's commit "fails": nothing is sent yet
    assert drain(queue_name) == []
    beat.db._retry_at = float("-inf")
    beat.tick()  # resolved: the runs exist, so they are sent, once
    beat.close()
    msgs = drain(queue_name)
    assert [m["headers"]["id"] for m in msgs] == [run_task_id("job", clock.now)]
    assert [(r.task_name, r.status) for r in runs(db_url)] == [("job", "sent")]
    assert admin.get("job").total_run_count == 1


def test_marks_that_cannot_be_written_are_retried_without_a_restart(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    fail_once(beat.engine, lambda sql: sql.startswith("UPDATE beatx_runs SET status"))
    clock.advance(seconds=10)
    beat.tick()  # published; the mark fails
    assert [r.status for r in runs(db_url)] == ["pending"]
    assert len(drain(queue_name)) == 1
    beat.db._retry_at = float("-inf")
    beat.tick()  # the mark is written now, and nothing is sent again
    assert [r.status for r in runs(db_url)] == ["sent"]
    beat.close()
    make(app, clock).close()  # nor at a restart
    assert drain(queue_name) == []


def test_when_marks_cannot_be_written_no_further_chunk_is_published(
        app, admin, db_url, clock, queue_name):
    for i in range(5):
        admin.add(f"job{i}", "proj.job", every(seconds=10))
    app.conf.update(beatx_max_in_flight=2)
    beat = make(app, clock)
    fail_once(beat.engine, lambda sql: sql.startswith("UPDATE beatx_runs SET status"))
    clock.advance(seconds=10)
    beat.tick()  # one chunk of 2 published; its marks fail: the other 3 wait
    assert len(drain(queue_name)) == 2
    assert [r.status for r in runs(db_url)] == ["pending"] * 5
    beat.db._retry_at = float("-inf")
    while beat.tick() == 0.0:  # marks written, then the other 3 sent
        pass
    beat.close()
    assert len(drain(queue_name)) == 3
    assert [r.status for r in runs(db_url)] == ["sent"] * 5


def test_marks_survive_a_lease_lost_during_the_outage_and_nothing_is_sent_twice(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    beat = scheduler_as(app, clock, "flaky")
    fail_once(beat.engine, lambda sql: sql.startswith("UPDATE beatx_runs SET status"))
    clock.advance(seconds=10)
    beat.tick()  # published; the mark fails
    assert len(drain(queue_name)) == 1
    # The outage outlasts the lease: the beat stops leading before the mark is written.
    beat.leadership._valid_until = 0.0
    beat.leadership._next_lease = float("inf")
    beat.db._retry_at = float("-inf")
    beat.tick()
    assert beat.leadership.role == "standby"
    assert [r.status for r in runs(db_url)] == ["sent"]  # written without the lease
    beat.leadership._next_lease = float("-inf")
    beat.tick()  # leading again: the run it published is not "recovered"
    assert beat.leadership.role == "leader"
    beat.close()
    assert drain(queue_name) == []


def test_without_the_lease_only_sent_marks_are_written(app, admin, db_url, clock, queue_name):
    from celery_beatx.beat.dispatch import _Marks

    admin.add("job", "proj.job", every(seconds=10))
    beat = scheduler_as(app, clock, "deposed")
    fail_once(beat.engine, lambda sql: sql.startswith("UPDATE beatx_runs SET status"))
    clock.advance(seconds=10)
    beat.tick()  # published; the mark fails
    (run,) = runs(db_url)
    # Say the publish had failed instead: a failure is the leader's to judge (and retry
    # under the same id), so a beat without the lease leaves the run pending.
    beat.dispatcher.unconfirmed = _Marks(failed=[(run.task_id, "boom")])
    beat.leadership._valid_until = 0.0
    beat.leadership._next_lease = float("inf")
    beat.db._retry_at = float("-inf")
    beat.tick()
    assert beat.leadership.role == "standby"
    assert [r.status for r in runs(db_url)] == ["pending"]
    beat.close()
    drain(queue_name)


def test_a_broker_outage_is_one_warning_and_no_publish_at_every_tick(
        admin, db_url, clock, caplog):
    from celery import Celery

    admin.add("job", "proj.job", every(seconds=10))
    admin.add("other", "proj.job", every(seconds=10))
    # Nothing listens on port 1: every connection is refused.
    app = Celery("dead_broker", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.update(beatx_database_url=db_url, timezone="UTC", beatx_sync_interval=1.0,
                    broker_connection_timeout=1)
    beat = make(app, clock)
    clock.advance(seconds=10)
    with caplog.at_level(logging.INFO):
        for _ in range(5):  # within the back-off: no publish is tried again
            beat.tick()
    text = caplog.text
    assert text.count("broker unreachable") == 1, text
    # Connecting fails at once (one bounded attempt, not Celery's 100 with growing sleeps),
    # and no publish is tried again within the back-off: no Celery "Message Error" storm.
    assert text.count("Message Error") <= 1, text
    assert "Trying again in" not in text, text
    assert "error while sending" not in text
    assert [r.status for r in runs(db_url)] == ["pending", "pending"]
    beat.close()


def every_5s(admin: BeatAdmin, count: int) -> None:
    admin.add_many([{"name": f"t{i:02d}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(count)])


def acting_after(count: int, action, published: list[str]) -> type[Scheduler]:  # type: ignore[no-untyped-def]
    """A Scheduler that notes each published entry and calls ``action(scheduler)`` right
    after the ``count``-th publish (while the chunk is under way)."""

    class Acting(Scheduler):
        def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
            result = super().apply_entry(entry, producer=producer)
            published.append(entry.name)
            if len(published) == count:
                action(self)
            return result

    return Acting


def test_a_chunk_leaves_for_redis_as_one_batch(app, admin, db_url, clock, queue_name):
    import redis

    from beat_helpers import REDIS

    client = redis.Redis.from_url(REDIS)
    waiting: list[int] = []

    class Watching(Scheduler):
        def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
            waiting.append(client.llen(queue_name))
            return super().apply_entry(entry, producer=producer)

    every_5s(admin, 30)
    app.conf.beatx_max_in_flight = 10
    beat = Watching(app, clock=clock)
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    client.close()
    # Three chunks of ten: a chunk's messages are buffered in one transport batch (one Redis
    # pipeline) and reach the queue together when the chunk is flushed, before its confirm.
    assert waiting == [0] * 10 + [10] * 10 + [20] * 10
    ids = sorted(m["headers"]["id"] for m in drain(queue_name))
    assert ids == sorted(r.task_id for r in runs(db_url))
    assert {r.status for r in runs(db_url)} == {"sent"}


def app_through_a_link(db_url: str, queue_name: str):  # type: ignore[no-untyped-def]
    """A Celery app whose broker is the test Redis behind a :class:`CuttableLink`."""
    from celery import Celery
    from kombu.utils.url import parse_url
    from tcp_cut import CuttableLink

    from beat_helpers import REDIS

    url = parse_url(REDIS)
    link = CuttableLink((url["hostname"], url["port"] or 6379))
    app = Celery("cut_broker", broker=f"redis://127.0.0.1:{link.port}/{url['virtual_host']}",
                 set_as_current=False)
    app.conf.update(beatx_database_url=db_url, task_default_queue=queue_name,
                    beatx_sync_interval=1.0, result_expires=None, timezone="UTC",
                    beatx_max_in_flight=10, broker_connection_timeout=1)
    return app, link


def assert_every_run_sent_once(queue_name: str, db_url: str) -> None:
    """Every run is ``sent`` and its message is in the queue once, under its own id."""
    ids = sorted(m["headers"]["id"] for m in drain(queue_name))
    assert ids == sorted(r.task_id for r in runs(db_url))
    assert {r.status for r in runs(db_url)} == {"sent"}


def tick_until_all_sent(beat: Scheduler, db_url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while {r.status for r in runs(db_url)} != {"sent"} and time.monotonic() < deadline:
        beat.tick()
        time.sleep(0.1)


def test_a_batch_that_fails_to_flush_stays_pending_and_is_sent_when_the_broker_answers(
        admin, db_url, clock, queue_name, caplog):
    app, link = app_through_a_link(db_url, queue_name)
    published: list[str] = []
    every_5s(admin, 10)
    # The batch holds all ten when the link is cut: its flush finds no broker.
    beat = acting_after(10, lambda _beat: link.cut(), published)(app, clock=clock)
    try:
        clock.advance(seconds=5)
        with caplog.at_level(logging.INFO):
            beat.tick()
        assert len(published) == 10
        assert drain(queue_name) == []
        assert {r.status for r in runs(db_url)} == {"pending"}
        assert "10 message(s) may not have reached the broker" in caplog.text
        link.restore()
        tick_until_all_sent(beat, db_url)
    finally:
        beat.close()
        link.close()
    messages = drain(queue_name)
    # Re-sent once the broker answered, with the ids recorded first, each once.
    assert sorted(m["headers"]["id"] for m in messages) == sorted(r.task_id for r in runs(db_url))
    assert len(messages) == 10
    assert {r.status for r in runs(db_url)} == {"sent"}


def test_a_reconnect_in_the_middle_of_a_chunk_loses_and_doubles_nothing(
        admin, db_url, clock, queue_name):
    app, link = app_through_a_link(db_url, queue_name)
    published: list[str] = []
    every_5s(admin, 10)
    # A blip after the fifth publish: every connection dropped, new ones accepted.
    beat = acting_after(5, lambda _beat: (link.cut(), link.restore()),
                        published)(app, clock=clock)
    try:
        clock.advance(seconds=5)
        beat.tick()
        tick_until_all_sent(beat, db_url)
    finally:
        beat.close()
        link.close()
    assert_every_run_sent_once(queue_name, db_url)


def test_a_channel_replaced_while_a_batch_is_open_fails_no_message(
        app, admin, db_url, clock, queue_name):
    def reconnect(beat: Scheduler) -> None:
        # What kombu's retry does on a reconnect: the producer gets a new channel, which the
        # open batch (bound to the old one) refuses for every later publish.
        beat.producer.revive(beat.producer.channel.connection.client.channel())

    every_5s(admin, 10)
    app.conf.beatx_max_in_flight = 10
    beat = acting_after(2, reconnect, [])(app, clock=clock)
    clock.advance(seconds=5)
    beat.tick()
    beat.close()
    assert_every_run_sent_once(queue_name, db_url)


def test_a_close_in_the_middle_of_a_chunk_sends_what_its_batch_holds(
        app, admin, db_url, clock, queue_name):
    published: list[str] = []
    every_5s(admin, 10)
    app.conf.beatx_max_in_flight = 10
    # Closed as an embedding application's thread would while beat is publishing (beat's
    # own SIGTERM handling waits for the whole batch).
    beat = acting_after(5, lambda beat: beat.close(), published)(app, clock=clock)
    clock.advance(seconds=5)
    beat.tick()
    assert len(published) == 5
    messages = drain(queue_name)
    statuses = {r.task_id: r.status for r in runs(db_url)}
    # The five handed to the chunk's batch left at the close and are marked sent (none is
    # left pending to be sent a second time); the other five were never published and stay
    # pending for the next start.
    assert len(messages) == 5
    assert sorted(m["headers"]["id"] for m in messages) == \
        sorted(t for t, s in statuses.items() if s == "sent")
    assert sorted(statuses.values()) == ["pending"] * 5 + ["sent"] * 5


def test_a_catch_up_is_recorded_in_batches_of_about_batch_size_sends(
        app, admin, db_url, clock, queue_name):
    beat = make(app, clock)
    for i in range(5):
        admin.add(f"job{i}", "proj.job", every(seconds=10), catchup="all")
    beat.poll_changes()
    beat.dispatcher.batch_size = 20
    clock.advance(seconds=100)  # ten occurrences of each task are due
    assert beat.tick() == 0.0  # more is due: come back at once
    assert len(runs(db_url)) == 20  # two tasks' ten occurrences, not all fifty
    while beat.tick() == 0.0:
        pass
    beat.close()
    assert sorted(r.status for r in runs(db_url)) == ["sent"] * 50
    assert len(drain(queue_name)) == 50


def test_a_record_that_fails_before_commit_sends_nothing_and_is_retried(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    fail_once(beat.engine, lambda sql: sql.startswith("INSERT INTO beatx_runs"))
    clock.advance(seconds=10)
    beat.tick()
    assert drain(queue_name) == [] and runs(db_url) == []
    beat.db._retry_at = float("-inf")
    beat.tick()
    beat.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == [run_task_id("job", clock.now)]


# -- leadership ----------------------------------------------------------------------------

def scheduler_as(app, clock, instance_id: str, **conf):  # type: ignore[no-untyped-def]
    app.conf.update(beatx_instance_id=instance_id, **conf)
    return make(app, clock)


def test_only_the_leader_sends_and_a_standby_takes_over_when_it_stops(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    a = scheduler_as(app, clock, "beat-a")
    b = scheduler_as(app, clock, "beat-b")
    assert (a.leadership.role, b.leadership.role) == ("leader", "standby")
    clock.advance(seconds=10)
    a.tick()
    b.tick()
    assert [m["headers"]["id"] for m in drain(queue_name)] == [run_task_id("job", clock.now)]
    a.close()  # a clean stop releases the lease at once
    b.leadership._next_lease = float("-inf")
    b.tick()
    assert b.leadership.role == "leader"
    clock.advance(seconds=10)
    b.tick()
    b.close()
    assert len(drain(queue_name)) == 1
    instances = {r.instance_id for r in runs(db_url)}
    assert instances == {"beat-a", "beat-b"}


def test_a_leader_whose_lease_was_taken_writes_and_sends_nothing(
        app, admin, db_url, clock, queue_name, caplog):
    admin.add("job", "proj.job", every(seconds=10))
    old = scheduler_as(app, clock, "old")
    assert old.leadership.role == "leader"
    # The old leader is paused past its lease; another beat takes the lease meanwhile.
    write(db_url, sa.update(Lock).where(Lock.name == "beatx:leader")
          .values(owner="new", token=Lock.token + 1))
    clock.advance(seconds=10)
    with caplog.at_level(logging.WARNING, logger="celery_beatx"):
        old.tick()  # its fenced record fails: nothing written, nothing sent
    assert drain(queue_name) == [] and runs(db_url) == []
    assert old.leadership.role == "standby"
    assert "lost leadership" in caplog.text
    old.close()


def test_a_leader_frozen_inside_a_fenced_transaction_does_not_keep_the_lease_row(
        app, admin, db_url, clock):
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time and no server to end a session")
    leader = scheduler_as(app, clock, "frozen", beatx_lease_seconds=3)
    assert leader.leadership.role == "leader"
    other = sa.create_engine(db_url)
    session = leader.repo._sessions()
    session.begin()
    try:
        leader.leadership.check_fence(session)  # the lease row is share-locked now...
        # ... and the leader stops between two statements (SIGSTOP): the server ends its
        # session after a third of the lease (1 s here), and another beat may lock the row.
        started = time.monotonic()
        with other.begin() as conn:
            if db_url.startswith("postgresql"):
                conn.exec_driver_sql("SET lock_timeout = '10s'")
            else:
                conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 10")
            conn.execute(sa.select(Lock.token).where(Lock.name == "beatx:leader")
                         .with_for_update())
        waited = time.monotonic() - started
        assert waited < 5.0, f"the lease row stayed locked {waited:.1f}s"
    finally:
        other.dispose()
        with contextlib.suppress(Exception):
            session.close()
        leader.close()


def test_a_batch_longer_than_the_lease_renews_it_between_chunks(
        app, admin, db_url, clock, queue_name):
    for i in range(30):
        admin.add(f"job{i:02d}", "proj.job", every(seconds=10))
    leader = scheduler_as(app, clock, "busy", beatx_lease_seconds=6, beatx_max_in_flight=2)
    # A slow broker: the monotonic clock moves 0.25 s at each look, so the batch of 30
    # sends spans far more than the lease (validity 4 s, renewal due every 2 s).
    ticks = {"now": 1000.0}

    def mono() -> float:
        ticks["now"] += 0.25
        return ticks["now"]

    leader.leadership.mono = mono
    leader.leadership._lease_step(mono())
    clock.advance(seconds=10)
    leader.tick()
    assert leader.leadership.role == "leader"
    assert len(drain(queue_name)) == 30
    assert sorted(r.status for r in runs(db_url)) == ["sent"] * 30
    leader.close()


def test_a_leader_past_its_local_deadline_stops_before_publishing(app, admin, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    beat = scheduler_as(app, clock, "slow")
    beat.leadership._valid_until = 0.0  # renewal is late (e.g. the process was stopped)
    beat.leadership._next_lease = float("inf")  # and cannot happen right now
    clock.advance(seconds=10)
    beat.tick()
    assert drain(queue_name) == []
    beat.close()


def test_with_ha_off_a_second_instance_is_warned_about_once(app, admin, clock, caplog):
    a = scheduler_as(app, clock, "one", beatx_ha=False)
    with caplog.at_level(logging.ERROR, logger="celery_beatx"):
        b = scheduler_as(app, clock, "two", beatx_ha=False)
        for _ in range(3):
            b.leadership._next_heartbeat = float("-inf")
            b.tick()
    assert caplog.text.count("another beat instance 'one'") == 1
    a.close()
    b.close()


def test_runs_of_a_live_instance_are_not_taken_over_with_ha_off(
        app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=10))
    a = scheduler_as(app, clock, "one", beatx_ha=False)
    scheduled = clock.now
    write(db_url, sa.insert(Run).values(task_name="job", task_id=run_task_id("job", scheduled),
                                        scheduled_at=scheduled, attempt=0, status="pending",
                                        instance_id="one", created_at=scheduled))
    b = scheduler_as(app, clock, "two", beatx_ha=False)
    b.tick()
    assert drain(queue_name) == []  # "one" is alive: its pending run is its own
    a.close()  # once it stopped, "two" takes the run over
    b._last_recover = float("-inf")
    b.tick()
    b.tick()
    b.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == [run_task_id("job", scheduled)]


# -- the clock -----------------------------------------------------------------------------

def test_a_wall_clock_jump_back_does_not_silence_tasks(app, admin, clock, queue_name, caplog):
    admin.add("job", "proj.job", every(seconds=2))
    beat = make(app, clock)
    clock.advance(seconds=2)
    beat.tick()
    assert len(drain(queue_name)) == 1
    with caplog.at_level(logging.WARNING, logger="celery_beatx"):
        clock.advance(hours=-1)  # NTP (or a person) steps the clock back an hour
        beat.tick()
    assert "jumped back" in caplog.text
    clock.advance(seconds=2)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 1  # on schedule, not an hour later
    assert admin.get("job").next_run_at <= clock.now + timedelta(seconds=2)


def test_forward_a_day_and_back_resumes_on_schedule(app, admin, clock, queue_name):
    admin.add("job", "proj.job", every(seconds=2))
    beat = make(app, clock)
    clock.advance(days=1)
    beat.tick()  # one catch-up run for the day "missed"
    assert len(drain(queue_name)) == 1
    clock.advance(days=-1, seconds=2)
    beat.tick()  # back: next runs are recomputed from the real time
    clock.advance(seconds=2)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) >= 1

