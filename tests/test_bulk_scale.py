"""Bulk writes at scale leave nothing behind: ``add_many`` of many tasks (with versions,
dependencies and a pre-existing task around them) then ``remove_many`` of the same tasks
gives back the database as it was, apart from the change feed's record of the removals."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from celery_beatx import crontab, every
from celery_beatx.store.models import Base

#: What a removal leaves on purpose: the change feed's tombstones and revision counter.
FEED_TABLES = {"beatx_tombstones", "beatx_counters"}


def snapshot(url: str) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in FEED_TABLES:
                continue
            rows = conn.execute(sa.select(table)).all()
            out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
    engine.dispose()
    return out


@pytest.mark.parametrize("size", [
    10_000,
    pytest.param(100_000, marks=pytest.mark.soak),  # the figure: ``make soak``
])
def test_add_many_then_remove_many_leaves_the_database_as_it_was(admin, db_url, size):
    admin.add("keeper", "t.keep", every(seconds=60), tags=["stay"])
    admin.add("upstream", "t.up", every(seconds=60))
    admin.update("keeper", description="changed once, so it has a stored version")
    before = snapshot(db_url)
    names = [f"bulk-{i:06d}" for i in range(size)]
    specs = [{"name": name, "task": "t.bulk", "args": [i], "tags": ["bulk"],
              "schedule": every(seconds=60 + i % 7) if i % 2 else crontab(minute=str(i % 60)),
              "depends_on": ["upstream"] if i % 10 == 0 else []}
             for i, name in enumerate(names)]
    for k in range(0, size, 10_000):
        admin.add_many(specs[k:k + 10_000])
    assert len(admin.list(tag="bulk")) == size
    middle = snapshot(db_url)
    assert len(middle["beatx_tasks"]) == size + 2
    assert len(middle["beatx_dependencies"]) == len(before["beatx_dependencies"]) + size // 10
    assert middle["beatx_task_versions"] == before["beatx_task_versions"]  # none at version 1
    removed = 0
    for k in range(0, size, 10_000):
        removed += admin.remove_many(names[k:k + 10_000])
    assert removed == size
    assert snapshot(db_url) == before
    assert [t.name for t in admin.list()] == ["keeper", "upstream"]


@pytest.mark.parametrize("count", [3, 1500])  # statements; COPY on PostgreSQL
def test_a_bulk_insert_that_breaks_a_constraint_raises_sqlalchemy_integrity_error(
        admin, count):
    # Callers (add_many's race with another writer, the retry of aborted writes) handle
    # SQLAlchemy's errors: a bulk insert must raise those, whichever way it wrote.
    from celery_beatx.store.models import Dependency
    from celery_beatx.store.repository import insert_rows

    admin.add("up", "t.up", every(seconds=60))
    rows = [{"task_name": "up", "depends_on": f"d{i}"} for i in range(count)]
    rows[-1] = rows[0]  # the same edge twice: its primary key is taken
    with pytest.raises(sa.exc.IntegrityError):
        with admin.repo.transaction() as session:
            insert_rows(session.connection(), Dependency.__table__, rows)
    with admin.repo.transaction(readonly=True) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(Dependency)).scalar() == 0


def test_add_many_gives_each_task_the_first_run_of_its_own_schedule_and_calendar(
        admin, clock):
    # Equal schedules share one parsed object, and add_many computes a first run once per
    # schedule object: a task with a calendar must still get its own.
    from datetime import UTC, datetime

    clock.now = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # a Friday
    daily = crontab(minute="0", hour="9")
    admin.add_many([
        {"name": "a", "task": "t", "schedule": daily},
        {"name": "weekdays", "task": "t", "schedule": crontab(minute="0", hour="9"),
         "calendar": {"weekdays": [0, 1, 2, 3, 4]}},
        {"name": "b", "task": "t", "schedule": daily.to_dict()},
        {"name": "hourly", "task": "t", "schedule": every(hours=1)},
        {"name": "c", "task": "t", "schedule": crontab(minute="0", hour="9")},
    ])
    saturday, monday = datetime(2026, 3, 7, 9, tzinfo=UTC), datetime(2026, 3, 9, 9, tzinfo=UTC)
    assert {t.name: t.next_run_at for t in admin.list()} == {
        "a": saturday, "b": saturday, "c": saturday, "weekdays": monday,
        "hourly": datetime(2026, 3, 6, 13, 0, tzinfo=UTC)}


def test_a_task_with_an_unknown_calendar_key_is_refused_and_nothing_is_written(admin):
    from celery_beatx.errors import InvalidSchedule

    with pytest.raises(InvalidSchedule, match="calendar key 'weekdays_only' is not one of"):
        admin.add_many([
            {"name": "fine", "task": "t", "schedule": every(hours=1)},
            {"name": "weekdays", "task": "t", "schedule": crontab(minute="0", hour="9"),
             "calendar": {"weekdays_only": True}}])
    assert admin.list() == []
