"""The Scheduler in-process: injected clock, real databases, real Redis broker."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from celery import Celery
from celery.schedules import crontab as celery_crontab

from beat_helpers import REDIS, drain, make, runs
from celery_beatx import BeatAdmin, cron, every
from celery_beatx.scheduler import Scheduler, run_task_id
from celery_beatx.store.models import Run, Task

UTC = timezone.utc
def test_expires_reaches_the_message_as_seconds_or_as_a_time(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    at = clock.now + timedelta(hours=2)
    admin.add("by_time", "proj.t", every(seconds=10), expires=at)
    admin.add("by_seconds", "proj.s", every(seconds=10), expires=30)
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    expires = {m["headers"]["task"]: m["headers"]["expires"] for m in drain(queue_name)}
    assert datetime.fromisoformat(expires["proj.t"]) == at
    # Celery turns seconds into a time from the moment of the send (the real clock's).
    assert datetime.fromisoformat(expires["proj.s"]) > datetime.now(UTC)


def test_sends_due_tasks_records_runs_and_state(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("fast", "proj.fast", every(seconds=10), args=[1], kwargs={"k": "v"},
              priority=3, expires=30, headers={"x-team": "ops"})
    admin.add("slow", "proj.slow", every(hours=1))
    beat = make(app, clock)
    assert set(beat.schedule) == {"fast", "slow"}
    assert beat.tick() <= 1.0  # nothing due yet; bounded by the sync interval
    assert drain(queue_name) == []
    clock.advance(seconds=10)
    beat.tick()
    msgs = drain(queue_name)
    assert len(msgs) == 1
    msg = msgs[0]
    scheduled = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    assert msg["headers"]["task"] == "proj.fast"
    assert msg["headers"]["id"] == run_task_id("fast", scheduled)
    assert msg["headers"]["beatx_run"]["name"] == "fast"
    assert msg["headers"]["x-team"] == "ops"
    assert msg["headers"]["expires"] is not None
    assert msg["properties"]["priority"] == 3
    assert (msg["args"], msg["kwargs"]) == ([1], {"k": "v"})
    info = admin.get("fast")
    assert info.total_run_count == 1 and info.last_run_at == clock.now
    assert info.next_run_at == scheduled + timedelta(seconds=10)
    assert [(r.task_name, r.status) for r in runs(db_url)] == [("fast", "sent")]
    beat.close()


def test_sends_several_due_in_one_tick_and_skips_missed(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add_many([{"name": f"t{i}", "task": "proj.t", "schedule": every(seconds=5)}
                    for i in range(20)])
    beat = make(app, clock)
    clock.advance(seconds=60.5)  # 11 occurrences missed: catch-up "once" sends one each
    beat.tick()
    assert len(drain(queue_name)) == 20
    beat.tick()
    assert drain(queue_name) == []
    # the catch-up run re-anchors on its send time (Celery's behaviour), so the next run is
    # a whole interval later rather than at the next grid point 4.5 s away
    assert admin.get("t0").next_run_at == clock.now + timedelta(seconds=5)
    beat.close()


def test_picks_up_changes_through_the_change_feed(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("a", "proj.a", every(seconds=5))
    beat = make(app, clock)
    assert beat.poll_changes() == 0
    admin.add("b", "proj.b", every(seconds=5))
    admin.update("a", args=[42])
    assert beat.poll_changes() == 2
    assert beat.schedule["a"].args == [42] and "b" in beat.schedule
    admin.disable("b")
    assert beat.poll_changes() == 1 and "b" not in beat.schedule
    admin.remove("a")
    assert beat.poll_changes() == 1 and beat.schedule == {}
    assert beat.poll_changes() == 0
    admin.enable("b")
    beat.poll_changes()
    clock.advance(seconds=5)
    beat.tick()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.b"]
    beat.close()


def test_beat_schedule_is_synced_as_config(app, db_url, clock):
    app.conf.beat_schedule = {
        "cfg-a": {"task": "proj.a", "schedule": 30.0, "args": (1,),
                  "options": {"queue": "q1", "routing_key": "rk"}},
        "cfg-b": {"task": "proj.b", "schedule": celery_crontab(minute="*/5")},
    }
    app.conf.timezone = "Europe/Paris"
    make(app, clock).close()
    admin = BeatAdmin(url=db_url, clock=clock)
    a = admin.get("cfg-a")
    assert a.source == "config" and a.queue == "q1" and a.options == {"routing_key": "rk"}
    assert a.schedule == every(seconds=30) and a.args == [1]
    b = admin.get("cfg-b")
    assert b.schedule.to_dict()["timezone"] == "Europe/Paris"
    # unchanged config: no new version; changed: new version; removed: disabled, kept
    make(app, clock).close()
    assert admin.get("cfg-a").version == 1
    app.conf.beat_schedule = {"cfg-a": {"task": "proj.a", "schedule": 60.0}}
    beat = make(app, clock)
    assert admin.get("cfg-a").version == 2
    assert admin.get("cfg-a").schedule == every(seconds=60)
    assert admin.get("cfg-b").enabled is False
    assert set(beat.schedule) == {"cfg-a"}
    beat.close()


def test_broken_stored_schedule_is_marked_invalid_and_beat_goes_on(
        app, db_url, clock, queue_name, caplog):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("good", "proj.good", every(seconds=5))
    admin.add("bad", "proj.bad", every(seconds=5))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(Task).where(Task.name == "bad")
                     .values(schedule={"type": "crontab", "minute": "99"}))
    engine.dispose()
    from celery_beatx.alerts import on_alert, remove_handler

    seen = []
    handler = on_alert(seen.append)
    try:
        with caplog.at_level(logging.ERROR, logger="celery_beatx"):
            beat = make(app, clock)
    finally:
        remove_handler(handler)
    assert "bad" in caplog.text
    assert set(beat.schedule) == {"good"}
    assert admin.get("bad").invalid_reason
    stored = admin.alerts(level="critical")
    assert [(a.kind, a.task_name) for a in stored] == [("invalid_schedule", "bad")]
    assert [(a.kind, a.task_name) for a in seen] == [("invalid_schedule", "bad")]
    clock.advance(seconds=5)
    beat.tick()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.good"]
    beat.close()


def test_late_send_without_a_missed_occurrence_stays_on_the_grid(app, db_url, clock):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("grid", "proj.grid", every(seconds=10))
    beat = make(app, clock)
    clock.advance(seconds=13)  # due at +10, sent 3 s late, +20 not missed yet
    beat.tick()
    assert admin.get("grid").next_run_at == datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC)
    beat.close()


def test_restart_keeps_state_and_never_doubles(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    for _ in range(3):
        clock.advance(seconds=10)
        beat.tick()
    beat.close()
    info = admin.get("job")
    assert info.total_run_count == 3
    beat = make(app, clock)  # restart at the same instant: nothing is due again
    beat.tick()
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    assert admin.get("job").total_run_count == 4
    ids = [m["headers"]["id"] for m in drain(queue_name)]
    assert len(ids) == 4 and len(set(ids)) == 4
    scheduled = [r.scheduled_at for r in runs(db_url)]
    assert len(scheduled) == len(set(scheduled)) == 4


def test_pending_run_left_by_a_crash_is_resent_with_same_id(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    scheduled = clock.now
    task_id = run_task_id("job", scheduled)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(Run).values(task_name="job", task_id=task_id,
                                           scheduled_at=scheduled, attempt=0,
                                           status="pending", created_at=scheduled))
    engine.dispose()
    beat = make(app, clock)  # takes the run over when it starts leading...
    beat.tick()  # ...and sends it at its first tick
    beat.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == [task_id]
    assert [r.status for r in runs(db_url)] == ["sent"]


def test_lazy_construction_does_no_io(tmp_path, clock):
    app = Celery("lazy", broker="redis://127.0.0.1:1/0", set_as_current=False)
    app.conf.beatx_database_url = f"sqlite:///{tmp_path}/nope/never.sqlite3"
    beat = Scheduler(app, lazy=True, clock=clock)
    assert "never.sqlite3" in beat.info
    assert not (tmp_path / "nope").exists()


def test_default_database_follows_beat_s_option(tmp_path, clock, monkeypatch):
    monkeypatch.delenv("BEATX_DATABASE_URL", raising=False)
    app = Celery("dflt", broker="memory://", set_as_current=False)
    app.conf.result_expires = None
    beat = Scheduler(app, schedule_filename=str(tmp_path / "mybeat"), clock=clock)
    beat.close()
    assert (tmp_path / "mybeat.sqlite3").exists()


def test_auto_migrate_off_refuses_an_old_schema(tmp_path, clock):
    app = Celery("nomig", broker="memory://", set_as_current=False)
    app.conf.update(beatx_database_url=f"sqlite:///{tmp_path}/empty.sqlite3",
                    beatx_auto_migrate=False)
    with pytest.raises(SystemExit, match="beatx migrate"):
        Scheduler(app, clock=clock)


def test_entry_point_alias_resolves():
    from celery.beat import Service

    app = Celery("alias", broker="memory://", set_as_current=False)
    service = Service(app, scheduler_cls="beatx")
    assert isinstance(service.get_scheduler(lazy=True), Scheduler)


def test_export_state_is_json_with_state(app, db_url, clock):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    doc = json.loads(admin.export_state())
    assert doc["tasks"][0]["total_run_count"] == 1


def test_config_entry_does_not_override_an_api_task(app, db_url, clock, caplog):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("shared", "proj.api", every(seconds=7))
    app.conf.beat_schedule = {"shared": {"task": "proj.cfg", "schedule": 5.0},
                              "broken": {"task": "proj.x", "schedule": "soon"},
                              "fine": {"task": "proj.fine", "schedule": 5.0}}
    with caplog.at_level(logging.WARNING, logger="celery_beatx"):
        make(app, clock).close()
    info = admin.get("shared")
    assert (info.task, info.source) == ("proj.api", "api")
    assert "ignored" in caplog.text and "'broken' is invalid" in caplog.text
    assert admin.get("fine").source == "config"


def test_an_occurrence_already_sent_is_not_sent_again_and_does_not_stall_beat(
        app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("rep", "proj.rep", every(seconds=10))
    admin.add("other", "proj.other", every(seconds=10))
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 2
    sent_at = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:  # e.g. a clock-skewed writer put back a time already sent
        conn.execute(sa.update(Task).where(Task.name == "rep").values(next_run_at=sent_at))
    engine.dispose()
    beat = make(app, clock)
    beat.tick()
    assert drain(queue_name) == []  # not sent twice
    clock.advance(seconds=10)
    beat.tick()  # and beat is not stuck: both go on
    beat.close()
    assert sorted(m["headers"]["task"] for m in drain(queue_name)) == ["proj.other", "proj.rep"]


def test_beat_never_undoes_an_admin_change_it_has_not_polled_yet(app, db_url, clock,
                                                                  queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    admin.add("rep", "proj.rep", every(seconds=10))
    beat = make(app, clock)
    admin.disable("job")
    admin.update("rep", schedule=cron("0 3 * * *"))
    clock.advance(seconds=10)
    # Both are due in beat's memory, which has not seen the changes: sending reads the
    # current definitions, so the disabled task is not sent and the changed one follows
    # its new schedule.
    due = beat._heap_slots.pop_due(clock.now.timestamp(), 100)
    assert {s.name for s in due} == {"job", "rep"}
    assert beat.dispatcher.dispatch(due, clock.now) == 0
    assert drain(queue_name) == []
    job, rep = admin.get("job"), admin.get("rep")
    assert job.enabled is False and job.total_run_count == 0
    assert rep.next_run_at == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert rep.total_run_count == 0
    beat.poll_changes()
    assert set(beat.schedule) == {"rep"}
    assert beat.schedule["rep"].next_run_at == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    beat.close()


def test_database_refusing_writes_makes_beat_back_off_not_spin(tmp_path, clock, queue_name):
    url = f"sqlite:///{tmp_path}/locked.sqlite3"
    app = Celery("backoff", broker=REDIS, set_as_current=False)
    # A change poll 5 s away: a first tick slowed down by a loaded machine cannot bring
    # the next poll close enough to cut the back-off's wait short (1 s poll: 0.3 s seen).
    app.conf.update(beatx_database_url=url, task_default_queue=queue_name,
                    beatx_engine_options={"connect_args": {"timeout": 0.05}},
                    beatx_sync_interval=5, result_expires=None)
    admin = BeatAdmin(url=url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    # The back-off's own clock stands still: a slow machine cannot run past it mid-test.
    frozen = time.monotonic()
    beat.db.mono = lambda: frozen
    clock.advance(seconds=10)
    holder = sqlite3.connect(f"{tmp_path}/locked.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        waits = [beat.tick()]
        failures = beat.db.failures
        waits += [beat.tick() for _ in range(2)]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Backs off instead of spinning: the next ticks wait, and try nothing meanwhile.
    assert waits[0] >= 0.5 and all(w > 0 for w in waits)
    assert failures >= 1 and beat.db.failures == failures
    assert drain(queue_name) == []
    beat.db._retry_at = float("-inf")  # the back-off has passed
    beat.tick()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.job"]
    beat.close()


def test_config_sync_keeps_admin_disable_and_survives_malformed_entries(app, db_url, clock,
                                                                         caplog):
    app.conf.beat_schedule = {
        "good": {"task": "proj.good", "schedule": 30.0},
        "as_list": ["not", "a", "dict"],
        "bad_kwargs": {"task": "proj.x", "schedule": 5.0, "kwargs": [1, 2]},
        "str_args": {"task": "proj.x", "schedule": 5.0, "args": "abc"},
    }
    with caplog.at_level(logging.ERROR, logger="celery_beatx"):
        make(app, clock).close()
    for name in ("as_list", "bad_kwargs", "str_args"):
        assert f"'{name}' is invalid" in caplog.text
    admin = BeatAdmin(url=db_url, clock=clock)
    assert [t.name for t in admin.list()] == ["good"]
    admin.disable("good")
    make(app, clock).close()
    assert admin.get("good").enabled is False  # a restart does not re-enable it
    app.conf.beat_schedule = {}
    make(app, clock).close()
    assert admin.get("good").source == "config-removed"
    app.conf.beat_schedule = {"good": {"task": "proj.good", "schedule": 30.0}}
    make(app, clock).close()
    good = admin.get("good")
    assert (good.source, good.enabled) == ("config", True)  # back in the config: enabled


def test_history_is_pruned_to_beatx_history_keep(app, db_url, clock, queue_name):
    app.conf.beatx_history_keep = 3
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(seconds=10))
    beat = make(app, clock)
    for _ in range(7):
        clock.advance(seconds=10)
        beat.tick()
    beat.close()
    kept = [r.scheduled_at for r in admin.history("job")]
    # pruned back to 3 at the 6th run, then one more: the newest 4 remain
    assert kept == [datetime(2026, 3, 1, 12, 0, s, tzinfo=UTC) if s < 60 else
                    datetime(2026, 3, 1, 12, 1, s - 60, tzinfo=UTC) for s in (70, 60, 50, 40)]
    assert admin.get("job").total_run_count == 7
    assert len(drain(queue_name)) == 7


def test_outcomes_are_read_at_every_wake_up_for_the_change_poll(app, db_url, clock):
    # Failures are read (and retries scheduled) at the pace of the change poll, each
    # time beat wakes up when idle: a failed run waits at most one interval to be seen.
    import time

    BeatAdmin(url=db_url, clock=clock).add("hourly", "proj.h", every(hours=1))
    beat = make(app, clock)
    beat.tick()
    reads = []
    followups = beat.followups

    def read(now: datetime) -> None:  # reads nothing, as when no run has failed
        reads.append(now)
        followups._loaded, followups.next_retry_at = True, None

    followups.run = read  # type: ignore[method-assign]
    polls = []
    poll_changes = beat.poll_changes

    def poll() -> int:
        polls.append(time.monotonic())
        return poll_changes()

    beat.poll_changes = poll  # type: ignore[method-assign]
    wait = beat.tick()
    wake_ups = missed = 0
    while len(reads) < 3 and wake_ups < 12:
        assert 0 < wait <= 1.0  # idle: sleep until the next poll
        before, polled = len(reads), len(polls)
        time.sleep(wait)  # what celery beat's loop does
        wait = beat.tick()
        wake_ups += 1
        assert len(reads) - before <= 1
        if len(polls) > polled and len(reads) == before:
            missed += 1  # the poll came and the read did not
    # Read at the pace of the poll: a wake-up that polls reads too.  (On a loaded machine
    # other chores, a lease renewal or a back-off, can wake beat between polls; a slow
    # tick can make one read just miss its time.  A read that missed its time at every
    # poll would miss three here.)
    assert len(reads) == 3 and missed <= 1, (wake_ups, missed)
    # A retry due in between is read at once, and the pace does not move with it.
    time.sleep(wait / 2)
    followups.next_retry_at = clock()
    wait = beat.tick()
    assert len(reads) == 4
    for _ in range(3):  # the paced read comes at the next poll (a wake-up or two)
        time.sleep(wait)
        wait = beat.tick()
        if len(reads) == 5:
            break
    assert len(reads) == 5
    beat.close()


def test_a_shutdown_signal_waits_for_the_outermost_deferred_block():
    """SIGTERM stays held until the outermost ``signals_deferred`` block ends (nested
    blocks, as around every publish inside a batch, neither release nor re-mask it).  The
    signal is sent to this thread: sent to the process, the kernel may hand it to another
    thread of the test runner that does not block it."""
    import signal
    import threading

    from celery_beatx.scheduler import signals_deferred

    received: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: received.append("term"))
    try:
        with signals_deferred():
            with signals_deferred():
                signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
                assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            assert received == []  # the inner block ended: still held
            assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert received == ["term"]  # delivered when the outer block ended
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        with signals_deferred():  # and held again by the next block
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            assert received == ["term"]
        assert received == ["term", "term"]
    finally:
        signal.signal(signal.SIGTERM, previous)
