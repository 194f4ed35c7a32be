"""Celery's own interface on our Scheduler: custom schedule classes driven in memory, the
runtime API written through to the database, and Celery's timing rules (a changed schedule,
``beat_cron_starting_deadline``, ``max_interval``).

In-process: an injected clock (``app.now`` follows it too, as Celery's schedules read it),
the real databases and a real Redis broker.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from celery import beat as celery_beat
from celery.beat import BeatLazyFunc
from celery.schedules import BaseSchedule as CeleryBaseSchedule
from celery.schedules import crontab as celery_crontab
from celery.schedules import schedstate
from celery.schedules import schedule as celery_schedule

from beat_helpers import drain, make, runs
from celery_beatx import BeatAdmin, InvalidSchedule, cron, every
from celery_beatx.scheduler import Scheduler, run_task_id

UTC = timezone.utc


class OffsetSchedule(celery_schedule):
    """A real-world custom interval: each run comes ``offset`` seconds after the interval."""

    def __init__(self, run_every: float, offset: float, **kwargs):
        super().__init__(run_every, **kwargs)
        self.offset = offset

    def remaining_estimate(self, last_run_at):
        return super().remaining_estimate(last_run_at) + timedelta(seconds=self.offset)


class EveryNthSecond(CeleryBaseSchedule):
    """A ``BaseSchedule`` with only ``is_due``: due once in each ``n``-second slot of the
    clock, checked every second."""

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def is_due(self, last_run_at):
        now = self.maybe_make_aware(self.now())
        last = self.maybe_make_aware(last_run_at)
        due = int(now.timestamp()) // self.n > int(last.timestamp()) // self.n
        return schedstate(due, 1.0)

    def __repr__(self) -> str:
        return f"<every {self.n}th second>"


def stamp(clock) -> str:
    return clock().isoformat()


@pytest.fixture
def live_app(app, clock, monkeypatch):
    """The test app, with Celery's ``app.now`` on the injected clock."""
    monkeypatch.setattr(app, "now", clock)
    return app


class Recording(Scheduler):
    """An ``apply_entry`` override, as Sentry's beat integration patches it."""

    def __init__(self, *args, **kwargs):
        self.applied: list[tuple[datetime, str, str]] = []
        super().__init__(*args, **kwargs)

    def apply_entry(self, entry, producer=None):
        self.applied.append((self.app.now(), entry.name, entry.options["task_id"]))
        return super().apply_entry(entry, producer=producer)


class StockRecorder(celery_beat.Scheduler):
    """Celery's stock scheduler, recording what it would send."""

    def __init__(self, *args, **kwargs):
        self.applied: list[tuple[datetime, str]] = []
        super().__init__(*args, **kwargs)

    def apply_entry(self, entry, producer=None):
        self.applied.append((self.app.now(), entry.name))

    def close(self) -> None:  # nothing to release: it never connected
        pass


def run_for(scheduler, clock, seconds: int) -> None:
    """Tick once a second (and again at once while it asks to), as beat's loop does."""
    for _ in range(seconds):
        for _ in range(20):
            if scheduler.tick() > 0:
                break
        clock.advance(seconds=1)


def test_celery_schedule_objects_fire_when_celerys_own_scheduler_fires_them(
        live_app, db_url, clock, queue_name):
    app = live_app
    clock.advance(seconds=0.437)  # not on a whole second: relative intervals round to one
    app.conf.beat_schedule = {
        "offset": {"task": "proj.offset", "schedule": OffsetSchedule(10, 3)},
        "nth": {"task": "proj.nth", "schedule": EveryNthSecond(7)},
        "relative": {"task": "proj.relative", "schedule": 2.5, "relative": True},
        "relative-obj": {"task": "proj.relobj",
                         "schedule": celery_schedule(timedelta(minutes=1), relative=True)},
        "nowfun": {"task": "proj.nowfun",
                   "schedule": celery_crontab(minute="*", nowfun=clock)},
        "lazy": {"task": "proj.lazy", "schedule": 20.0,
                 "kwargs": {"at": BeatLazyFunc(stamp, clock)}},
    }
    ours = Recording(app, clock=clock)
    stock = StockRecorder(app)
    try:
        run_for(ours, clock, 150)
    finally:
        ours.close()
    clock.now -= timedelta(seconds=150)  # the same 150 s again, for Celery's scheduler
    run_for(stock, clock, 150)

    sent = [(at, name) for at, name, _ in ours.applied]
    assert sorted(sent) == sorted(stock.applied)  # (within one second, any order)
    by_name = {name: [at for at, n in sent if n == name] for name in app.conf.beat_schedule}
    # The offset counts (13 s, not 10), relative 2.5 s rounds down to whole seconds (every
    # 2 s), the minute rounds to the minute, is_due() decides on its own.
    assert [b - a for a, b in zip(by_name["offset"], by_name["offset"][1:])] == \
        [timedelta(seconds=13)] * (len(by_name["offset"]) - 1)
    assert {b - a for a, b in zip(by_name["relative"], by_name["relative"][1:])} == \
        {timedelta(seconds=2)}
    assert all(t.second == 0 for t in by_name["relative-obj"])
    assert len(by_name["nth"]) >= 20 and len(by_name["nowfun"]) >= 2
    assert all(len(times) >= 2 for times in by_name.values()), by_name

    # Every send went through the record -> send -> confirm path, with its id.
    messages = drain(queue_name)
    assert len(messages) == len(sent)
    recorded = {r.task_id: r for r in runs(db_url)}
    for message, (_, name, task_id) in zip(messages, ours.applied):
        assert message["headers"]["id"] == task_id
        assert message["headers"]["beatx_run"]["name"] == name
        run = recorded[task_id]
        assert (run.task_name, run.status) == (name, "sent")
        assert task_id == run_task_id(name, run.scheduled_at)
        if name == "lazy":  # the BeatLazyFunc was called at the send
            assert message["kwargs"] == {"at": message["headers"]["beatx_run"]["scheduled_at"]}
    admin = BeatAdmin(url=db_url, clock=clock)
    assert admin.get("offset").total_run_count == len(by_name["offset"])


def test_in_memory_tasks_are_described_and_invalid_where_the_object_is_missing(
        live_app, db_url, clock, caplog):
    app = live_app
    app.conf.beat_schedule = {
        "nth": {"task": "proj.nth", "schedule": EveryNthSecond(5), "args": (1,),
                "kwargs": {"when": BeatLazyFunc(stamp, clock)}, "options": {"queue": "q1"}},
    }
    Scheduler(app, clock=clock).close()
    admin = BeatAdmin(url=db_url, clock=clock)
    info = admin.get("nth")
    assert info.schedule_dict == {"type": "celery", "class": f"{__name__}.EveryNthSecond",
                                  "repr": "<every 5th second>",
                                  "reason": "is a custom schedule class"}
    assert "EveryNthSecond" in repr(info.schedule)
    assert (info.task, info.args, info.queue) == ("proj.nth", [1], "q1")
    assert info.kwargs == {"when": f"<BeatLazyFunc {__name__}.stamp>"}
    exported = json.loads(admin.export_state())["tasks"][0]
    assert exported["schedule"]["class"] == f"{__name__}.EveryNthSecond"
    # Without the object, no fire times: a clear error, not a crash.
    with pytest.raises(InvalidSchedule, match="beat_schedule has no such entry"):
        admin.next_runs("nth")
    with pytest.raises(InvalidSchedule, match="has no remaining_estimate"):
        BeatAdmin(app, clock=clock).next_runs("nth")
    # The admin API cannot change what beat sends from memory...
    with pytest.raises(InvalidSchedule, match="args: task 'nth' is driven by a Celery"):
        admin.update("nth", args=[2])
    with pytest.raises(InvalidSchedule, match="^jitter"):
        admin.update("nth", jitter=5)
    admin.update("nth", description="polls", tags=["x"])  # ...but may describe it
    assert admin.disable("nth").enabled is False and admin.enable("nth").enabled is True

    # A beat that does not hold the object (here: one that was running when another beat
    # added the entry through Celery's API) marks the task invalid, with the reason.
    app.conf.beat_schedule = {}
    other = Scheduler(app, clock=clock)
    holder = Scheduler(app, clock=clock)
    holder.add(name="rt-nth", task="proj.nth", schedule=EveryNthSecond(3))
    assert "rt-nth" in holder.schedule
    with caplog.at_level(logging.ERROR, logger="celery_beatx"):
        other.poll_changes()
    assert "'rt-nth' cannot be scheduled" in caplog.text
    assert "rt-nth" not in other.schedule
    assert "does not hold it" in admin.get("rt-nth").invalid_reason
    other.close()
    holder.close()


def test_next_runs_of_an_in_memory_task_come_from_remaining_estimate(live_app, db_url, clock):
    app = live_app
    app.conf.beat_schedule = {"offset": {"task": "proj.offset",
                                         "schedule": OffsetSchedule(60, 15)}}
    beat = make(app, clock)
    clock.advance(seconds=75)
    beat.tick()
    beat.close()
    ran = clock.now
    admin = BeatAdmin(app, clock=clock)
    assert admin.get("offset").last_run_at == ran
    assert admin.next_runs("offset", 3) == [ran + timedelta(seconds=75 * k) for k in (1, 2, 3)]


def test_runtime_api_writes_through_and_takes_effect(live_app, db_url, clock, queue_name,
                                                      caplog):
    app = live_app
    app.conf.beat_schedule = {"cfg": {"task": "proj.cfg", "schedule": 10.0}}
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("owned", "proj.owned", every(hours=1))
    beat = make(app, clock)

    entry = beat.add(name="rt", task="proj.rt", schedule=timedelta(seconds=5), args=(1,))
    assert entry.task == "proj.rt"
    rt = admin.get("rt")
    assert (rt.source, rt.schedule, rt.args) == ("config", every(seconds=5), [1])
    beat.update_from_dict({"rt2": {"task": "proj.rt2", "schedule": 10.0}})
    assert {"cfg", "owned", "rt", "rt2"} <= set(beat.schedule)
    clock.advance(seconds=5)
    run_for(beat, clock, 1)
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.rt"]

    # add() with an existing name changes that task; it goes on running, state kept.
    beat.add(name="rt", task="proj.rt", schedule=timedelta(seconds=5), args=(2,))
    assert admin.get("rt").version == 2 and admin.get("rt").total_run_count == 1
    run_for(beat, clock, 5)
    assert [(m["headers"]["task"], m["args"]) for m in drain(queue_name)] == \
        [("proj.cfg", []), ("proj.rt", [2]), ("proj.rt2", [])]

    # A task of the admin API is never changed or stopped through Celery's API.
    with caplog.at_level(logging.WARNING, logger="celery_beatx"):
        beat.add(name="owned", task="proj.other", schedule=1.0)
        beat.merge_inplace({"rt": {"task": "proj.rt", "schedule": 5.0}})
    assert "'owned' is ignored" in caplog.text
    assert admin.get("owned").task == "proj.owned" and admin.get("owned").enabled
    # merge_inplace: config tasks not in the mapping leave the schedule (disabled, kept).
    assert set(beat.schedule) == {"owned", "rt"}
    assert {t.name: (t.source, t.enabled) for t in admin.list()} == {
        "cfg": ("config-removed", False), "owned": ("api", True), "rt": ("config", True),
        "rt2": ("config-removed", False)}
    assert admin.get("rt").args == []  # the merged entry is the definition now

    # The schedule setter and item deletion are the same operations.
    beat.schedule = {"cfg": {"task": "proj.cfg", "schedule": 10.0}, "junk": "not an entry"}
    assert set(beat.schedule) == {"owned", "cfg", "junk"} and beat.schedule["junk"] == \
        "not an entry"
    del beat.schedule["cfg"]
    assert admin.get("cfg").enabled is False and "cfg" not in beat.schedule

    # Bad input raises and writes nothing.
    with pytest.raises(InvalidSchedule, match="schedule"):
        beat.add(name="bad", task="proj.bad", schedule="soon")
    with pytest.raises(InvalidSchedule, match="kwargs"):
        beat.update_from_dict({"ok": {"task": "proj.ok", "schedule": 5.0},
                               "bad": {"task": "proj.bad", "schedule": 5.0, "kwargs": [1]}})
    assert {t.name for t in admin.list()} == {"cfg", "owned", "rt", "rt2"}
    beat.close()

    # A restart syncs beat_schedule: a task added at runtime leaves, as in Celery.
    app.conf.beat_schedule = {"cfg": {"task": "proj.cfg", "schedule": 10.0}}
    make(app, clock).close()
    assert admin.get("rt").enabled is False and admin.get("cfg").enabled is True


def test_runtime_add_with_last_run_at_follows_celerys_rule(live_app, db_url, clock,
                                                          queue_name):
    beat = make(live_app, clock)
    beat.add(name="hourly", task="proj.hourly", schedule=celery_crontab(minute=0),
             last_run_at=clock.now.replace(tzinfo=None) - timedelta(hours=3))  # naive: UTC
    info = BeatAdmin(url=db_url, clock=clock).get("hourly")
    assert info.last_run_at == clock.now - timedelta(hours=3)
    assert info.next_run_at == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # missed: due now
    beat.tick()
    assert len(drain(queue_name)) == 1  # once, as Celery
    beat.close()


def test_a_shortened_interval_is_due_at_once(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(hours=2))
    beat = make(app, clock)
    clock.advance(hours=2)
    beat.tick()
    last = clock.now
    assert len(drain(queue_name)) == 1
    clock.advance(hours=1)
    # every 30 min from the last run: 30 min ago, so due now (Celery and django-celery-beat
    # send it at once), not at the next interval after now
    assert admin.update("job", schedule=every(minutes=30)).next_run_at == \
        last + timedelta(minutes=30)
    beat.poll_changes()
    beat.tick()
    assert len(drain(queue_name)) == 1  # catch-up "once": one run for the missed ones
    info = admin.get("job")
    assert info.last_run_at == clock.now and info.next_run_at == clock.now + \
        timedelta(minutes=30)
    # Lengthening it: the next run follows the last one (not now).
    clock.advance(minutes=10)
    assert admin.update("job", schedule=every(hours=3)).next_run_at == \
        info.last_run_at + timedelta(hours=3)
    # Re-enabling counts from now (the disabled time is not "missed").
    admin.disable("job")
    clock.advance(hours=5)
    assert admin.enable("job").next_run_at == datetime(2026, 3, 1, 21, 0, tzinfo=UTC)
    beat.close()


def test_a_changed_schedule_catches_up_by_its_policy(app, db_url, clock, queue_name):
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("job", "proj.job", every(hours=2), catchup="all")
    beat = make(app, clock)
    clock.advance(hours=2)
    beat.tick()
    drain(queue_name)
    clock.advance(hours=1)
    admin.update("job", schedule=every(minutes=20))
    beat.poll_changes()
    beat.tick()
    scheduled = [m["headers"]["beatx_run"]["scheduled_at"] for m in drain(queue_name)]
    assert scheduled == [(clock.now - timedelta(minutes=m)).isoformat() for m in (40, 20, 0)]
    beat.close()


@pytest.mark.parametrize("late, sent", [(timedelta(minutes=40), False),
                                        (timedelta(minutes=20), True)])
def test_cron_starting_deadline_after_a_restart(app, db_url, clock, queue_name, late, sent):
    app.conf.beat_cron_starting_deadline = 1800
    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("hourly", "proj.hourly", cron("0 * * * *"))
    beat = make(app, clock)
    clock.now = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 1
    clock.now = datetime(2026, 3, 1, 15, 0, tzinfo=UTC) + late  # 14:00 and 15:00 missed
    beat = make(app, clock)
    beat.tick()
    beat.close()
    messages = drain(queue_name)
    if sent:  # 15:00 is within the deadline: sent, once
        assert [m["headers"]["beatx_run"]["scheduled_at"] for m in messages] == \
            ["2026-03-01T15:00:00+00:00"]
    else:  # 15:00 is older than the deadline: not sent, recorded as skipped
        assert messages == []
        skipped = [r for r in runs(db_url) if r.status == "skipped"]
        assert [r.scheduled_at for r in skipped] == [datetime(2026, 3, 1, 14, 0, tzinfo=UTC)]
    assert admin.get("hourly").next_run_at == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


def test_max_interval_follows_the_sync_interval_and_an_idle_beat_sleeps(app, db_url, clock):
    app.conf.beatx_ha = False  # a single beat (no lease) used to spin with a 0 s sleep
    beat = make(app, clock)
    assert beat.max_interval == 1.0
    # it sleeps (a spinning beat returned 0), at most max_interval; a chore (the heartbeat)
    # due sooner may shorten one sleep on a slow machine
    assert all(0.05 < t <= 1.0 for t in [beat.tick() for _ in range(3)])
    beat.close()
    app.conf.update(beatx_sync_interval=5.0, beat_max_loop_interval=2)
    beat = make(app, clock)
    assert beat.max_interval == 2
    assert 1.5 < beat.tick() <= 2
    beat.close()


def test_a_send_that_raises_is_logged_and_recorded_as_failed(live_app, db_url, clock,
                                                              queue_name, caplog):
    class Failing(Scheduler):
        def send_task(self, *args, **kwargs):
            raise celery_beat.SchedulingError("no route")

    beat = Failing(live_app, clock=clock)
    beat.add(name="x", task="proj.x", schedule=5.0)
    beat.add(name="y", task="proj.y", schedule=5.0)
    clock.advance(seconds=5)
    with caplog.at_level(logging.ERROR, logger="celery.beat"):
        assert beat.tick() == 0
    beat.close()
    assert "Message Error" in caplog.text and "no route" in caplog.text
    assert sorted((r.task_name, r.status) for r in runs(db_url)) == [
        ("x", "send_failed"), ("y", "send_failed")]


class Flaky(CeleryBaseSchedule):
    """``is_due`` raises while ``broken`` is set; due every 5 s otherwise."""

    broken = True

    def is_due(self, last_run_at):
        if Flaky.broken:
            raise RuntimeError("ephemeris unavailable")
        elapsed = (self.now() - self.maybe_make_aware(last_run_at)).total_seconds()
        return schedstate(elapsed >= 5, 1.0)


def test_an_is_due_that_raises_marks_the_task_invalid_and_beat_goes_on(
        live_app, db_url, clock, queue_name, caplog):
    live_app.conf.beat_schedule = {"flaky": {"task": "proj.flaky", "schedule": Flaky()},
                                   "fine": {"task": "proj.fine", "schedule": 5.0}}
    Flaky.broken = True
    beat = make(live_app, clock)
    admin = BeatAdmin(url=db_url, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="celery_beatx"):
        run_for(beat, clock, 6)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "ephemeris unavailable" in errors[0].getMessage()
    assert admin.get("flaky").invalid_reason == \
        "is_due() raised RuntimeError: ephemeris unavailable"
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.fine"]
    Flaky.broken = False
    run_for(beat, clock, 2)
    beat.close()
    assert admin.get("flaky").invalid_reason is None
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.flaky"]


def test_a_subclass_may_add_entries_before_and_after_setting_up(app, db_url, clock):
    class Adding(Scheduler):
        def setup_schedule(self):
            self.add(name="early", task="proj.early", schedule=10.0)
            super().setup_schedule()
            self.add(name="late", task="proj.late", schedule=10.0)

    app.conf.beat_schedule = {"cfg": {"task": "proj.cfg", "schedule": 10.0}}
    beat = Adding(app, clock=clock)
    assert set(beat.schedule) == {"cfg", "early", "late"}
    beat.close()
    admin = BeatAdmin(url=db_url, clock=clock)
    assert {(t.name, t.source, t.enabled) for t in admin.list()} == {
        ("cfg", "config", True), ("early", "config", True), ("late", "config", True)}
    lazy = Adding(app, clock=clock, lazy=True)  # set up on first use, as celery beat does
    assert set(lazy.schedule) == set()
    lazy.tick()
    assert set(lazy.schedule) == {"cfg", "early", "late"}
    lazy.close()


def run_steps(beat, admin, clock, *steps: tuple[timedelta, int]) -> None:  # type: ignore[no-untyped-def]
    """For each ``(advance, ticks)``: move the clock on, then tick that many times; then
    close the scheduler and the admin's engine."""
    try:
        for advance, ticks in steps:
            clock.advance(seconds=advance.total_seconds())
            for _ in range(ticks):
                beat.tick()
    finally:
        beat.close()
        admin.engine.dispose()


def test_apply_entry_sees_a_celery_schedule_equal_to_the_stored_one(live_app, db_url, clock,
                                                                    queue_name):
    """Monitoring integrations (Sentry's beat monitoring) read ``entry.schedule`` in their
    ``apply_entry`` patch to describe the monitor: a stored interval or crontab is handed
    over as Celery's own schedule object; one Celery cannot express is ``None``."""
    seen: dict[str, object] = {}

    class Monitoring(Scheduler):
        def apply_entry(self, entry, producer=None):
            seen[entry.name] = entry.schedule
            return super().apply_entry(entry, producer=producer)

    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("interval", "proj.i", every(seconds=30))
    admin.add("nightly", "proj.n", cron("*/5 * * * *"))
    admin.add("elsewhere", "proj.e", cron("*/5 * * * *", timezone="Asia/Tokyo"))
    admin.add("anchored", "proj.a", every(seconds=30, anchor=clock.now))
    admin.add("calendared", "proj.c", every(seconds=30),
              calendar={"weekdays": [0, 1, 2, 3, 4, 5, 6]})
    run_steps(Monitoring(live_app, clock=clock), admin, clock, (timedelta(minutes=5), 5))
    assert isinstance(seen["interval"], celery_schedule)
    assert seen["interval"].run_every == timedelta(seconds=30)
    nightly = seen["nightly"]
    assert isinstance(nightly, celery_crontab) and nightly._orig_minute == "*/5"
    assert nightly.minute == set(range(0, 60, 5)) and nightly.hour == set(range(24))
    assert seen["elsewhere"] is None and seen["anchored"] is None
    assert "calendared" in seen and seen["calendared"] is None  # Celery has no calendars


def test_apply_entry_sees_the_last_run_of_the_task(live_app, db_url, clock, queue_name):
    """The entry handed to ``apply_entry`` shows the task's last run; a task that never ran
    shows the scheduled time of the run being sent.  Tasks with equal schedules share one
    Celery schedule object."""
    seen: list[tuple[str, datetime, datetime, object]] = []

    class Watching(Scheduler):
        def apply_entry(self, entry, producer=None):
            run = entry.options["headers"]["beatx_run"]
            seen.append((entry.name, entry.last_run_at,
                         datetime.fromisoformat(run["scheduled_at"]), entry.schedule))
            return super().apply_entry(entry, producer=producer)

    admin = BeatAdmin(url=db_url, clock=clock)
    admin.add("a", "proj.a", every(seconds=30))
    admin.add("b", "proj.b", every(seconds=30))
    first_tick = clock.now + timedelta(seconds=31)
    run_steps(Watching(live_app, clock=clock), admin, clock,
              (timedelta(seconds=31), 3), (timedelta(seconds=30), 3))
    first = [s for s in seen if s[1] == s[2]]
    assert sorted(s[0] for s in first) == ["a", "b"], seen
    later = [s for s in seen if s not in first]
    assert sorted(s[0] for s in later) == ["a", "b"], seen
    assert all(s[1] == first_tick and s[2] > first_tick - timedelta(seconds=1)
               for s in later), seen
    schedules = {id(s[3]) for s in seen}
    assert len(schedules) == 1 and isinstance(seen[0][3], celery_schedule)
