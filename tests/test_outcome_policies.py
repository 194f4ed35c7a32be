"""Retries, overlap and dependencies driven by run outcomes, in process.

The worker's side (``celery_beatx.track``) is replaced here by writing the outcome into the
run row exactly as the hook does (status, finished_at); real databases, real Redis broker,
injected clock.  The end-to-end tests with a real worker live in tests/e2e.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from beat_helpers import drain, make
from celery_beatx import BeatAdmin, RetryPolicy, every
from celery_beatx.errors import InvalidSchedule
from celery_beatx.scheduler import Scheduler, run_task_id
from celery_beatx.store.models import Run


@pytest.fixture
def admin(db_url, clock):
    adm = BeatAdmin(url=db_url, clock=clock)
    yield adm
    adm.engine.dispose()


def all_runs(db_url):  # type: ignore[no-untyped-def]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Run).order_by(Run.id)).all()
    engine.dispose()
    return rows


def finish(db_url, task_id: str, status: str, at) -> None:  # type: ignore[no-untyped-def]
    """What the worker hook writes when a run ends."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(Run).where(Run.task_id == task_id).values(
            status=status, finished_at=at, started_at=at, runtime=0.01,
            error="RuntimeError: boom" if status == "failed" else None))
    engine.dispose()


def ids(queue_name: str) -> list[tuple[str, int]]:
    return [(m["headers"]["beatx_run"]["name"], m["headers"]["beatx_run"]["attempt"])
            for m in drain(queue_name)]


# -- retries -------------------------------------------------------------------------------

def test_retry_policy_is_validated_at_add(admin):
    with pytest.raises(InvalidSchedule, match="unknown key 'banana'"):
        admin.add("x", "proj.x", every(seconds=10), retry={"banana": "yes"})
    with pytest.raises(InvalidSchedule, match="retry.strategy"):
        admin.add("x", "proj.x", every(seconds=10), retry={"strategy": "sometimes"})
    with pytest.raises(InvalidSchedule, match="retry.max_delay"):
        RetryPolicy(delay=60, max_delay=10)
    assert admin.list() == []
    info = admin.add("x", "proj.x", every(seconds=10), retry=RetryPolicy(max_retries=2))
    assert info.retry["max_retries"] == 2


def test_a_failed_run_is_retried_after_the_delay_with_attempt_ids_then_stops(
        app, admin, db_url, clock, queue_name):
    admin.add("flaky", "proj.flaky", every(hours=1),
              retry=RetryPolicy(max_retries=2, strategy="exponential", delay=5, factor=2))
    beat = make(app, clock)
    clock.advance(hours=1)
    scheduled = clock.now
    beat.tick()
    assert ids(queue_name) == [("flaky", 0)]
    for attempt, delay in ((1, 5), (2, 10)):
        finish(db_url, run_task_id("flaky", scheduled, attempt - 1), "failed", clock.now)
        beat._last_followup = float("-inf")
        beat.tick()  # the failure is decided: a retry waits
        waiting = [r for r in all_runs(db_url) if r.status == "waiting"]
        assert [(r.attempt, r.retry_at) for r in waiting] == \
            [(attempt, clock.now + timedelta(seconds=delay))]
        clock.advance(seconds=delay - 1)
        beat.tick()
        assert ids(queue_name) == []  # not before its delay
        clock.advance(seconds=1)
        beat.tick()
        msgs = drain(queue_name)
        assert [m["headers"]["id"] for m in msgs] == [run_task_id("flaky", scheduled, attempt)]
        assert msgs[0]["headers"]["beatx_run"]["attempt"] == attempt
    finish(db_url, run_task_id("flaky", scheduled, 2), "failed", clock.now)
    beat._last_followup = float("-inf")
    beat.tick()
    clock.advance(minutes=10)
    beat.tick()
    beat.close()
    assert ids(queue_name) == []  # max_retries reached
    states = {(r.attempt, r.status, r.retry_state) for r in all_runs(db_url)}
    assert states == {(0, "failed", "scheduled"), (1, "failed", "scheduled"),
                      (2, "failed", "exhausted")}


def test_a_restart_between_failure_and_retry_neither_loses_nor_doubles_it(
        app, admin, db_url, clock, queue_name):
    admin.add("flaky", "proj.flaky", every(hours=1),
              retry=RetryPolicy(max_retries=1, strategy="fixed", delay=30))
    beat = make(app, clock)
    clock.advance(hours=1)
    scheduled = clock.now
    beat.tick()
    finish(db_url, run_task_id("flaky", scheduled, 0), "failed", clock.now)
    beat._last_followup = float("-inf")
    beat.tick()
    beat.close()  # the retry waits in the database
    drain(queue_name)
    for _ in range(2):  # two restarts: each decides nothing new, sends nothing early
        beat = make(app, clock)
        beat.tick()
        beat.close()
    assert ids(queue_name) == []
    clock.advance(seconds=30)
    beat = make(app, clock)
    beat.tick()
    beat.tick()
    beat.close()
    assert ids(queue_name) == [("flaky", 1)]
    assert sum(r.attempt == 1 for r in all_runs(db_url)) == 1


def test_a_failed_publish_is_retried_per_policy(app, admin, db_url, clock, queue_name):
    attempts = []

    class Refusing(Scheduler):
        def send_task(self, name=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            attempts.append(kwargs.get("task_id"))
            if len(attempts) == 1:
                raise ValueError("the router refused it")
            return super().send_task(name, *args, **kwargs)

    admin.add("job", "proj.job", every(hours=1),
              retry=RetryPolicy(max_retries=3, strategy="fixed", delay=2))
    beat = Refusing(app, clock=clock)
    clock.advance(hours=1)
    beat.tick()
    assert [r.status for r in all_runs(db_url)] == ["send_failed"]
    beat._last_followup = float("-inf")
    beat.tick()
    clock.advance(seconds=2)
    beat.tick()
    beat.close()
    assert ids(queue_name) == [("job", 1)]
    assert [r.status for r in all_runs(db_url)] == ["send_failed", "sent"]


def test_without_a_policy_a_failure_is_final(app, admin, db_url, clock, queue_name):
    admin.add("job", "proj.job", every(hours=1))
    beat = make(app, clock)
    clock.advance(hours=1)
    beat.tick()
    finish(db_url, run_task_id("job", clock.now, 0), "failed", clock.now)
    beat._last_followup = float("-inf")
    beat.tick()
    beat.close()
    assert [(r.status, r.retry_state) for r in all_runs(db_url)] == [("failed", "none")]


# -- overlap -------------------------------------------------------------------------------

def test_overlap_skip_does_not_send_while_the_previous_run_is_unfinished(
        app, admin, db_url, clock, queue_name):
    admin.add("slow", "proj.slow", every(seconds=10), overlap="skip")
    beat = make(app, clock)
    clock.advance(seconds=10)
    first = clock.now
    beat.tick()
    clock.advance(seconds=10)
    beat.tick()  # the first has not finished: skipped, with the reason
    assert ids(queue_name) == [("slow", 0)]
    skipped = [r for r in all_runs(db_url) if r.status == "skipped"]
    assert len(skipped) == 1 and "overlap" in skipped[0].reason
    finish(db_url, run_task_id("slow", first, 0), "succeeded", clock.now)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    assert ids(queue_name) == [("slow", 0)]


def test_overlap_buffer_one_sends_one_run_as_soon_as_the_previous_finishes(
        app, admin, db_url, clock, queue_name):
    admin.add("slow", "proj.slow", every(seconds=10), overlap="buffer_one")
    beat = make(app, clock)
    clock.advance(seconds=10)
    first = clock.now
    beat.tick()
    clock.advance(seconds=10)
    second = clock.now
    beat.tick()  # buffered
    clock.advance(seconds=10)
    beat.tick()  # a second one while one waits: skipped
    assert len(drain(queue_name)) == 1
    statuses = [(r.scheduled_at, r.status) for r in all_runs(db_url)]
    assert statuses == [(first, "sent"), (second, "buffered"), (clock.now, "skipped")]
    finish(db_url, run_task_id("slow", first, 0), "succeeded", clock.now)
    beat._last_followup = float("-inf")
    beat.tick()  # released at once
    beat.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == [run_task_id("slow", second, 0)]


# -- dependencies --------------------------------------------------------------------------

def test_a_dependant_waits_for_its_upstream_to_succeed(app, admin, db_url, clock, queue_name):
    admin.add("extract", "proj.extract", every(seconds=60))
    admin.add("transform", "proj.transform", every(seconds=60), depends_on=["extract"])
    beat = make(app, clock)
    clock.advance(seconds=60)
    first = clock.now
    beat.tick()  # extract is sent; transform waits (extract has not succeeded)
    assert ids(queue_name) == [("extract", 0)]
    blocked = [r for r in all_runs(db_url) if r.task_name == "transform"]
    assert [(r.status, r.scheduled_at) for r in blocked] == [("blocked", first)]
    clock.advance(seconds=5)
    beat.tick()
    assert ids(queue_name) == []  # still waiting
    finish(db_url, run_task_id("extract", first, 0), "succeeded", clock.now)
    clock.advance(seconds=1)
    beat.tick()  # re-checked: sent now, for its own occurrence
    beat.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == \
        [run_task_id("transform", first, 0)]


def test_a_dependant_of_a_failed_upstream_is_skipped_after_one_period(
        app, admin, db_url, clock, queue_name):
    admin.add("extract", "proj.extract", every(seconds=60))
    admin.add("transform", "proj.transform", every(seconds=60), depends_on=["extract"])
    beat = make(app, clock)
    clock.advance(seconds=60)
    first = clock.now
    beat.tick()
    finish(db_url, run_task_id("extract", first, 0), "failed", clock.now)
    for _ in range(5):
        clock.advance(seconds=10)
        beat.tick()
    assert ids(queue_name) == [("extract", 0)]
    clock.advance(seconds=10)  # one period later: the next extract is sent, transform skipped
    beat.tick()
    beat.tick()
    beat.close()
    transform = [(r.scheduled_at, r.status) for r in all_runs(db_url)
                 if r.task_name == "transform"]
    assert transform[0] == (first, "skipped")
    reason = [r.reason for r in all_runs(db_url) if r.task_name == "transform"][0]
    assert "did not succeed within one period" in reason


def test_policies_that_need_outcomes_are_refused_when_the_app_records_none(db_url, clock):
    from celery import Celery

    app = Celery("untracked", set_as_current=False)
    app.conf.update(beatx_database_url=db_url, beatx_track_results=False)
    admin = BeatAdmin(app, clock=clock)
    with pytest.raises(InvalidSchedule, match="beatx_track_results is off"):
        admin.add("a", "proj.a", every(seconds=10), overlap="skip")
    admin.add("up", "proj.up", every(seconds=10))
    with pytest.raises(InvalidSchedule, match="depends_on needs run outcomes"):
        admin.add("b", "proj.b", every(seconds=10), depends_on=["up"])
    with pytest.raises(InvalidSchedule, match="overlap"):
        admin.update("up", overlap="buffer_one")
    assert [t.name for t in admin.list()] == ["up"]
    admin.engine.dispose()


# -- catch-up and jitter across restarts ---------------------------------------------------

@pytest.mark.parametrize("catchup, expected", [("skip", 0), ("once", 1), ("all", 5)])
def test_after_downtime_covering_five_occurrences(app, admin, db_url, clock, queue_name,
                                                  catchup, expected):
    admin.add("job", "proj.job", every(seconds=10), catchup=catchup)
    beat = make(app, clock)
    clock.advance(seconds=10)
    beat.tick()
    beat.close()
    drain(queue_name)
    down = clock.now
    clock.advance(seconds=55)  # beat is down: 5 occurrences (+10 ... +50) are missed
    beat = make(app, clock)
    beat.tick()
    beat.tick()
    beat.close()
    got = [m["headers"]["id"] for m in drain(queue_name)]
    missed = [down + timedelta(seconds=10 * i) for i in range(1, 6)]
    assert got == [run_task_id("job", when, 0) for when in missed[:expected]]
    skipped = [r for r in all_runs(db_url) if r.status == "skipped"]
    assert bool(skipped) == (catchup == "skip")


def test_a_jittered_fire_time_survives_a_restart(app, admin, db_url, clock, queue_name):
    admin.add("spread", "proj.spread", every(minutes=10), jitter=120)
    beat = make(app, clock)
    slot = beat._heap_slots.get("spread")
    offset = slot.fire_at - slot.next_at.timestamp()
    assert 0 < offset <= 120
    beat.close()
    again = make(app, clock)  # restarted: the same occurrence fires at the same time
    assert again._heap_slots.get("spread").fire_at == slot.fire_at
    clock.advance(minutes=10, seconds=offset - 0.5)
    again.tick()
    assert drain(queue_name) == []  # scheduled time passed, its jitter not yet
    clock.advance(seconds=0.5)
    again.tick()
    again.close()
    assert [m["headers"]["id"] for m in drain(queue_name)] == \
        [run_task_id("spread", slot.next_at, 0)]
