"""How a task row is stored, on each real database: a crontab without its ``"*"`` fields,
version 1 dated by ``created_at`` (no copy of it); read back, nothing tells the difference."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from celery_beatx import BeatAdmin, all_of, any_of, crontab, every
from celery_beatx.schedules import Calendar, calendar_filtered
from celery_beatx.store.models import Task
from celery_beatx.store.types import compact_schedule, expand_schedule


def stored(admin: BeatAdmin, name: str) -> sa.Row:  # type: ignore[type-arg]
    """The row as the database holds it: the schedule as its JSON text."""
    with admin.repo.transaction(readonly=True) as session:
        return session.execute(sa.select(sa.cast(Task.schedule, sa.Text), Task.version_at,
                                         Task.created_at, Task.version_comment)
                               .where(Task.name == name)).one()


NESTED = [
    crontab(minute=0, hour=9),
    any_of(crontab(minute=0, hour=9, day_of_week="mon-fri"), every(hours=6)),
    all_of(crontab(minute="*/5"), crontab(hour="9-17")),
    calendar_filtered(crontab(minute=30, hour=10), Calendar(weekdays=(0, 1, 2, 3, 4))),
]


@pytest.mark.parametrize("schedule", NESTED, ids=["crontab", "any_of", "all_of", "calendar"])
def test_crontab_fields_left_at_star_are_not_stored_and_read_back(admin, clock, schedule):
    admin.add("t", "proj.t", schedule)
    text = stored(admin, "t")[0]
    assert '"*"' not in text.replace('"minute":"*/5"', "")
    assert "day_of_month" not in text
    info = admin.get("t")
    assert info.schedule == schedule
    assert info.schedule_dict == schedule.to_dict()  # every field, as to_dict gives it
    # the stored form schedules the same times
    assert admin.next_runs("t", 3) == _runs(schedule, clock())


def _runs(schedule, at):  # type: ignore[no-untyped-def]
    out = []
    for _ in range(3):
        at = schedule.next_after(at, out[-1] if out else None)
        out.append(at)
    return out


def test_a_row_in_the_earlier_full_form_reads_the_same_and_is_not_a_change(admin):
    daily = crontab(minute=0, hour=3)
    admin.add("old", "proj.t", daily)
    full = json.dumps(daily.to_dict())  # how releases before 0.1.x stored it
    with admin.repo.transaction() as session:
        value = "CAST(:s AS JSON)" if session.get_bind().dialect.name == "postgresql" else ":s"
        session.execute(sa.text(f"UPDATE beatx_tasks SET schedule = {value} WHERE name = 'old'"),
                        {"s": full})
    assert '"day_of_week"' in stored(admin, "old")[0]
    assert admin.get("old").schedule == daily
    # Setting the same schedule again is no change: no version 2.
    assert admin.update("old", schedule=crontab(minute=0, hour=3)).version == 1
    assert len(admin.versions("old")) == 1
    changed = admin.update("old", schedule=crontab(minute=0, hour=4))
    assert changed.version == 2
    first = admin.versions("old")[0]
    assert schedule_of(first.definition) == daily


def schedule_of(definition):  # type: ignore[no-untyped-def]
    from celery_beatx import schedule_from_dict

    return schedule_from_dict(definition["schedule"])


def test_version_one_takes_its_time_and_comment_from_the_task(admin, clock):
    admin.add("v", "proj.t", every(minutes=5))
    _, version_at, created_at, comment = stored(admin, "v")
    # not a second copy of created_at, nor of the constant comment
    assert (version_at, comment) == (None, None)
    (v1,) = admin.versions("v")
    assert (v1.version, v1.created_at, v1.comment) == (1, created_at, "created")
    assert created_at == clock()
    later = clock.advance(minutes=1)
    admin.update("v", args=[1])
    v1, v2 = admin.versions("v")
    assert (v1.created_at, v1.comment) == (created_at, "created")  # kept as the snapshot
    assert (v2.created_at, v2.comment) == (later, "updated")
    assert stored(admin, "v")[1] == later
    admin.rollback("v", 1)
    assert [v.comment for v in admin.versions("v")] == ["created", "updated", "rollback to 1"]


def test_compact_and_expand_are_inverse_and_leave_other_values_alone():
    for schedule in NESTED:
        data = schedule.to_dict()
        assert expand_schedule(compact_schedule(data)) == data
        assert compact_schedule(data) != data  # something was left out
    for value in (None, "text", [1], {"type": "interval", "seconds": 60},
                  {"type": "crontab", "minute": "0"}, {"schedules": "not a list"}):
        assert compact_schedule(value) == value
    # An unknown key of a crontab (a newer release's field) is kept both ways.
    data = {"type": "crontab", "minute": "*", "extra": 1}
    assert compact_schedule(data) == {"type": "crontab", "extra": 1}
    assert expand_schedule(compact_schedule(data))["extra"] == 1
    assert data == {"type": "crontab", "minute": "*", "extra": 1}  # not changed in place


def test_beat_loads_the_compact_form(admin, clock):
    from celery_beatx.store.rows import load_schedule_text

    admin.add("b", "proj.t", crontab(minute=15))
    data, (schedule, problem), in_memory = load_schedule_text(stored(admin, "b")[0])
    assert (problem, in_memory) == (None, False)
    assert schedule == crontab(minute=15)
    assert data == crontab(minute=15).to_dict()
    assert schedule.next_after(clock()) - clock() <= timedelta(hours=1)


def test_a_driver_that_decodes_the_json_gets_the_full_form_too():
    """Some drivers hand the schedule column over already decoded: beat expands it the same
    way as text (a cached text load must not be the only path that does)."""
    from celery_beatx.store.rows import load_schedule_text

    compact = {"type": "crontab", "minute": "15"}
    data, (schedule, problem), in_memory = load_schedule_text(compact)
    assert (problem, in_memory) == (None, False)
    assert data == {"type": "crontab", "minute": "15", "hour": "*", "day_of_week": "*",
                    "day_of_month": "*", "month_of_year": "*"}
    assert schedule == crontab(minute=15)
    assert compact == {"type": "crontab", "minute": "15"}


def test_beat_reads_the_same_definition_from_a_plain_row_as_from_the_model(admin, clock):
    """Beat reads each due task as a plain row, by column position; the admin reads model
    objects.  Both give the same definition, in the same key order, whichever column
    ``expires`` is stored in."""
    from celery_beatx.store.rows import checked_definition, definition_of

    admin.add("plain", "proj.t", every(seconds=30), args=[1, "x"], kwargs={"k": [2]},
              queue="q", priority=3, headers={"h": "v"}, tags=["a", "b"])
    admin.add("seconds", "proj.t", every(seconds=30), expires=90)
    admin.add("absolute", "proj.t", every(seconds=30), expires=clock() + timedelta(hours=2),
              description="at a time")
    names = ["absolute", "plain", "seconds"]
    with admin.repo.transaction(readonly=True) as session:
        rows = admin.repo.task_rows(session, names)
        models = admin.repo.get_tasks(session, names)
        assert [r.name for r in rows] == [m.name for m in models] == names
        for row, model in zip(rows, models):
            plain, orm = definition_of(row), definition_of(model)
            assert plain == orm and list(plain) == list(orm)
            assert checked_definition(row) == checked_definition(model)
    by_name = {r.name: definition_of(r) for r in rows}
    assert by_name["plain"]["args"] == [1, "x"] and by_name["plain"]["queue"] == "q"
    assert by_name["seconds"]["expires"] == 90
    assert checked_definition(rows[0])[0]["expires"] == clock() + timedelta(hours=2)
