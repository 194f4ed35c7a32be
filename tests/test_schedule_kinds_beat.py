"""Every schedule kind through BeatAdmin and the Scheduler (injected clock, real DBs, Redis)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from beat_helpers import drain, make
from celery_beatx import (
    BeatAdmin,
    Calendar,
    InvalidSchedule,
    ScheduleBuilder,
    ScheduleTemplates,
    TaskNotFound,
    all_of,
    any_of,
    cron,
    crontab,
    custom,
    every,
    once,
    register_schedule,
    solar,
)
from celery_beatx.schedules.custom import unregister_schedule


@pytest.fixture
def admin(db_url, clock):
    adm = BeatAdmin(url=db_url, clock=clock)
    yield adm
    adm.engine.dispose()


def test_once_runs_exactly_once_then_is_disabled(app, admin, clock, queue_name, db_url):
    admin.add("one", "proj.one", once(clock.now + timedelta(seconds=5)))
    beat = make(app, clock)
    clock.advance(seconds=5)
    beat.tick()
    clock.advance(seconds=60)
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 1
    info = admin.get("one")
    assert (info.enabled, info.next_run_at, info.total_run_count) == (False, None, 1)
    make(app, clock).close()  # a restart does not send it again
    assert drain(queue_name) == []


def test_once_delete_cleanup_keeps_history(app, admin, clock, queue_name, db_url):
    admin.add("gone", "proj.gone", once(clock.now + timedelta(seconds=1), cleanup="delete"))
    beat = make(app, clock)
    clock.advance(seconds=2)
    beat.tick()
    beat.close()
    with pytest.raises(TaskNotFound):
        admin.get("gone")
    assert [r.status for r in admin.history("gone")] == ["sent"]
    assert len(drain(queue_name)) == 1


def test_once_in_the_past_runs_at_next_tick_and_survives_a_restart(app, admin, clock,
                                                                    queue_name):
    admin.add("late", "proj.late", once(clock.now - timedelta(hours=1)))
    assert admin.get("late").next_run_at == clock.now
    make(app, clock).close()  # beat restarts before its first tick: nothing lost
    beat = make(app, clock)
    beat.tick()
    beat.tick()
    beat.close()
    assert len(drain(queue_name)) == 1
    assert admin.get("late").enabled is False


def test_any_of_anchored_intervals_fire_on_both_grids(app, admin, clock, queue_name):
    t0 = clock.now
    admin.add("both", "proj.both", any_of(every(seconds=2, anchor=t0),
                                          every(seconds=3, anchor=t0)))
    beat = make(app, clock)
    for _ in range(12):
        clock.advance(seconds=1)
        beat.tick()
    beat.close()
    sent = [m["headers"]["beatx_run"]["scheduled_at"] for m in drain(queue_name)]
    offsets = [int(round((_parse(s) - t0).total_seconds())) for s in sent]
    assert offsets == [2, 3, 4, 6, 8, 9, 10, 12]


def _parse(value):
    from datetime import datetime

    return datetime.fromisoformat(value)


def test_all_of_and_cron_and_solar_are_stored_and_sent(app, admin, clock, queue_name):
    admin.add("and", "proj.and", all_of(cron("*/10 * * * *"), cron("*/15 * * * *")))
    admin.add("sun", "proj.sun", solar("sunrise", 51.5, -0.13))
    assert [t.minute for t in admin.next_runs("and", 2)] == [30, 0]
    sunrise = admin.get("sun").next_run_at
    assert sunrise.date() == clock.now.date() + timedelta(days=1)  # 12:00 UTC: already up
    beat = make(app, clock)
    clock.advance(minutes=30)
    beat.tick()
    beat.close()
    assert [m["headers"]["task"] for m in drain(queue_name)] == ["proj.and"]


def test_custom_registered_unknown_and_raising(app, admin, clock, queue_name, caplog):
    @register_schedule("every_7s")
    def every_7s(last_run_at, now, step=7):
        return now + timedelta(seconds=step)

    @register_schedule("explodes_later")
    def explodes_later(last_run_at, now):
        if last_run_at is not None:
            raise RuntimeError("boom")
        return now + timedelta(seconds=1)

    try:
        admin.add("c7", "proj.c7", custom("every_7s", step=7))
        admin.add("bomb", "proj.bomb", custom("explodes_later"))
        with pytest.raises(InvalidSchedule, match="not registered"):
            admin.add("nobody", "proj.x", custom("nobody_registered_this"))
        beat = make(app, clock)
        clock.advance(seconds=1)
        beat.tick()  # bomb sends once, then raises computing its next run
        clock.advance(seconds=6)
        beat.tick()
        beat.close()
        assert sorted(m["headers"]["task"] for m in drain(queue_name)) == \
            ["proj.bomb", "proj.c7"]
        assert "boom" in admin.get("bomb").invalid_reason
        assert admin.get("c7").invalid_reason is None
        # beat restarted in a process where the function is not registered
        unregister_schedule("every_7s")
        beat = make(app, clock)
        assert "c7" not in beat.schedule
        beat.close()
        assert "not registered" in admin.get("c7").invalid_reason
        kinds = {(a.kind, a.task_name) for a in admin.alerts(level="critical")}
        assert kinds == {("invalid_schedule", "bomb"), ("invalid_schedule", "c7")}
    finally:
        unregister_schedule("every_7s")
        unregister_schedule("explodes_later")


def test_calendar_blackout_skips_fire_times(app, admin, clock, queue_name):
    start, end = clock.now - timedelta(minutes=1), clock.now + timedelta(seconds=30)
    cal = Calendar(business_hours=None, weekdays=None, blackouts=[(start, end)])
    admin.add("quiet", "proj.quiet", every(seconds=10), calendar=cal)
    admin.add("loud", "proj.loud", every(seconds=10))
    assert admin.get("quiet").next_run_at == end
    beat = make(app, clock)
    for _ in range(3):
        clock.advance(seconds=10)
        beat.tick()
    beat.close()
    tasks = [m["headers"]["task"] for m in drain(queue_name)]
    assert tasks.count("proj.loud") == 3 and tasks.count("proj.quiet") == 1
    assert admin.get("quiet").calendar == cal.to_dict()


def test_calendar_input_is_validated(admin):
    with pytest.raises(InvalidSchedule, match="business_hours"):
        admin.add("x", "t", every(seconds=5), calendar={"business_hours": ["25:00", "26:00"]})
    assert admin.list() == []


def test_builder_and_templates_round_trip_through_export(admin, clock):
    built = ScheduleBuilder().every_n_minutes(15).business_hours_only() \
        .in_timezone("Asia/Tokyo").build()
    admin.add("b", "t", built)
    admin.add("last", "t", ScheduleTemplates.monthly_last_day(hour=3))
    doc = admin.export_state()
    admin.remove_many(["b", "last"])
    admin.import_state(doc)
    assert admin.get("b").schedule == built
    last = admin.next_runs("last", 3)
    assert [(t.month, t.day) for t in last] == [(3, 31), (4, 30), (5, 31)]
    assert json.loads(doc)["tasks"][0]["schedule"]["type"] == "calendar_filtered"


def every_kind(now):
    """One schedule of every kind (and nestings), all with a next run after ``now``."""
    cal = Calendar(business_hours=("09:00", "17:00"), weekdays=(0, 1, 2, 3, 4),
                   holidays=["2026-12-25"], timezone="Europe/Paris")
    return {
        "interval": every(minutes=5),
        "anchored": every(seconds=90, anchor=now),
        "crontab": crontab(minute="*/5", hour="9-17", day_of_week="mon-fri",
                           timezone="Europe/Paris"),
        "cron": cron("0 9 13 * 5", timezone="America/New_York"),
        "solar": solar("golden_hour_evening", 48.85, 2.35),
        "once": once(now + timedelta(days=2), cleanup="delete"),
        "any_of": any_of(cron("0 9 * * *"), solar("sunset", 35.68, 139.65)),
        "all_of": all_of(cron("*/10 * * * *"), any_of(cron("*/15 * * * *"), every(hours=1))),
        "calendar_filtered": ScheduleBuilder().every_n_hours(2).weekdays_only().build(),
        "template": ScheduleTemplates.monthly_last_day(hour=23),
        "with_calendar": (cron("*/30 * * * *"), cal),
    }


def test_every_kind_goes_through_add_export_import_and_beat(app, admin, clock):
    kinds = every_kind(clock.now)
    for name, schedule in kinds.items():
        if isinstance(schedule, tuple):
            admin.add(name, "proj.k", schedule[0], calendar=schedule[1])
        else:
            admin.add(name, "proj.k", schedule)
    before = {t.name: (t.schedule_dict, t.calendar, t.next_run_at) for t in admin.list()}
    assert all(next_run is not None for _, _, next_run in before.values())
    doc = admin.export_state()
    admin.import_state(doc, mode="replace")
    after = {t.name: (t.schedule_dict, t.calendar, t.next_run_at) for t in admin.list()}
    assert after == before
    beat = make(app, clock)
    assert set(beat.schedule) == set(kinds)
    for name, entry in beat.schedule.items():
        assert entry.next_run_at == before[name][2], name
    beat.close()
