"""What every run did, and what beat does about it (issue 8, "What the tests must show"),
with a real beat, a real prefork worker tracking outcomes (``celery_beatx.track``) and a
real broker (Redis):

- a task that succeeds, one that raises and one that sleeps past ``slow_seconds`` leave
  runs with the right status and runtime; the failing one is re-sent per its
  ``RetryPolicy`` (delays +-1 s, attempt ids), then stops (SQLite, PostgreSQL, MariaDB);
- publishes that fail while the broker (a private Redis) is stopped are held and sent
  once it is back, with their own ids (an outage uses up no retry attempt), and each runs
  once; the occurrences missed meanwhile follow ``catchup``;
- extract -> transform -> load: each is sent only after its upstream succeeded; when
  extract fails, transform is ``blocked``, then skipped after one period (all three DBs);
- an every-1-second task sleeping 3 s never has two runs at once with ``overlap="skip"``,
  and with ``"buffer_one"`` the next starts right after the previous ends;
- after a downtime covering 5 occurrences, ``catchup`` ``skip`` / ``once`` / ``all`` send
  0, 1 and 5 runs with the expected scheduled times in their ids; a jittered occurrence
  is sent at its jittered time by a beat restarted in between;
- a worker killed with ``kill -9`` leaves a ``started`` run that becomes ``stuck`` after
  ``stuck_seconds``, reported by ``health()``;
- pause, resume, backfill twice and ``run_now`` give the documented runs and schedule.

The same message published twice to a prefork worker with 4 processes is covered by
``test_tracking_live.py::test_the_same_message_twice_runs_once``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from harness import wait_for
from outcomes import (
    ANCHOR,
    UTC,
    grid_after,
    grid_between,
    kill9_with_children,
    overlapping,
    runs_of,
    wait_runs,
)

from celery_beatx import AlertConfig, RetryPolicy, every
from celery_beatx.beat.dispatch import run_task_id
from celery_beatx.policies import jitter_offset

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

DBS = ["sqlite", "postgresql", "mariadb"]
#: No failure-rate or consecutive-failure alerts in these tests (they fail on purpose).
QUIET = {"consecutive_failures": None, "failure_rate": None}


def now() -> datetime:
    return datetime.now(UTC)


# -- outcomes and retries ------------------------------------------------------------------


@pytest.mark.parametrize("db", DBS)
def test_outcomes_runtimes_and_retries(make_cluster, admin_for, db):
    cluster = make_cluster("redis", db)
    admin = admin_for(cluster)
    admin.add("ok", "e2eapp.mark", every(seconds=1), args=["ok"])
    admin.add("nap", "e2eapp.sleep", every(hours=1), args=["nap", 1.5],
              alerts=AlertConfig(slow_seconds=0.5, **QUIET))
    policy = RetryPolicy(max_retries=2, strategy="exponential", delay=1, factor=2)
    admin.add("boom", "e2eapp.fail", every(hours=1), args=["boom"], retry=policy,
              alerts=AlertConfig(**QUIET))
    cluster.start_worker(pool="prefork", concurrency=2)
    beat = cluster.start_beat()
    nap = admin.run_now("nap")
    first = admin.run_now("boom")

    failed = wait_runs(admin, "boom", 3, ("failed",), 30)
    beat.wait_log("boom failed 3 time(s); no retries left", 10)
    assert [r.attempt for r in failed] == [0, 1, 2], failed
    assert {r.scheduled_at for r in failed} == {first.scheduled_at}
    assert [r.task_id for r in failed] == [
        run_task_id("boom", first.scheduled_at, n) for n in range(3)]
    assert [r.kind for r in failed] == ["manual", "retry", "retry"]
    for before, after in zip(failed, failed[1:]):
        waited = (after.sent_at - before.finished_at).total_seconds()
        expected = policy.delay_for(after.attempt)  # 1 s, then 2 s
        assert abs(waited - expected) <= 1.0, (after.attempt, waited, expected)
    for run in failed:
        assert run.error == "ValueError: boom boom" and run.runtime is not None, run
        assert 0 <= run.runtime < 1.0 and run.finished_at >= run.started_at, run
    time.sleep(policy.delay_for(3) + 1)  # a third retry would have been sent by now
    assert len(runs_of(admin, "boom")) == 3, runs_of(admin, "boom")
    markers = cluster.markers(label="boom")
    assert sorted(m.task_id for m in markers) == sorted(r.task_id for r in failed)

    slow = wait_runs(admin, "nap", 1, ("succeeded",), 20)[0]
    assert slow.task_id == nap.task_id and 1.5 <= slow.runtime < 3.0, slow
    alert = wait_for(lambda: [a for a in admin.alerts() if a.kind == "slow_execution"], 15,
                     "the slow_execution alert")
    assert [a.task_name for a in alert] == ["nap"], alert

    oks = wait_runs(admin, "ok", 3, ("succeeded",), 20)
    for run in oks:
        assert 0 <= run.runtime < 1.0 and run.error is None and run.attempt == 0, run
        assert run.started_at >= run.sent_at - timedelta(seconds=0.5), run
    assert beat.stop() == 0
    assert "Traceback" not in beat.output()


# -- broker outage -------------------------------------------------------------------------


def test_sends_failed_while_the_broker_is_down_go_out_when_it_is_back(
        make_cluster, admin_for, private_redis):
    redis = private_redis()
    cluster = make_cluster(redis, "postgresql")
    admin = admin_for(cluster)
    admin.add("tick", "e2eapp.mark", every(seconds=1, anchor=ANCHOR), args=["tick"],
              retry=RetryPolicy(max_retries=3, strategy="fixed", delay=1),
              alerts=AlertConfig(**QUIET))
    cluster.start_worker(pool="prefork", concurrency=2)
    beat = cluster.start_beat()
    wait_runs(admin, "tick", 2, ("succeeded",), 20)
    redis.stop()
    stopped = now()
    time.sleep(4)
    held = [r for r in runs_of(admin, "tick") if r.scheduled_at > stopped]
    assert held, "beat recorded nothing while the broker was down"
    assert all(r.status in ("pending", "send_failed", "waiting") for r in held), held
    redis.start()
    back = now()
    wait_for(lambda: [r for r in runs_of(admin, "tick") if r.status == "succeeded"
                      and r.scheduled_at > back], 30, "a run scheduled after the broker is back")
    beat.stop()
    wait_for(lambda: all(r.status in ("succeeded", "skipped") for r in runs_of(admin, "tick")
                         if r.scheduled_at > stopped), 20,
             "every run held during the outage to finish")

    runs = runs_of(admin, "tick")
    for run in runs:
        if run.scheduled_at > stopped and run.scheduled_at < back:
            assert run.status in ("succeeded", "skipped"), run
    # Each held send left once the broker was back; none ran twice.
    # The broker refusing connections is an outage, not a failed send: the held runs keep
    # their ids (attempt 0) and leave as soon as the broker answers; no retry attempt is
    # used up and nothing is left behind as send_failed.
    for run in held:
        final = [r for r in runs if r.task_id == run.task_id]
        assert final and final[0].status == "succeeded", (run, final)
        assert timedelta(0) <= final[0].sent_at - back < timedelta(seconds=5), final[0]
    assert {r.attempt for r in runs} == {0}, runs
    assert not [r for r in runs if r.status in ("send_failed", "waiting", "pending")], runs
    # The occurrences missed during the outage: one catch-up run (catchup="once").
    missed = [r for r in runs if r.kind == "catchup" and r.scheduled_at > stopped]
    assert len(missed) == 1 and missed[0].status == "succeeded", runs
    markers = cluster.markers(label="tick")
    ids = [m.task_id for m in markers]
    assert len(ids) == len(set(ids)), "a run executed twice"
    assert set(ids) == {r.task_id for r in runs if r.status == "succeeded"}


# -- dependencies --------------------------------------------------------------------------


@pytest.mark.parametrize("db", DBS)
def test_extract_transform_load(make_cluster, admin_for, db):
    cluster = make_cluster("redis", db)
    admin = admin_for(cluster)
    grid = every(seconds=2, anchor=ANCHOR)
    admin.add("extract", "e2eapp.sleep", grid, args=["extract", 0.5],
              alerts=AlertConfig(**QUIET))
    admin.add("transform", "e2eapp.mark", grid, args=["transform"], depends_on=["extract"],
              alerts=AlertConfig(**QUIET))
    admin.add("load", "e2eapp.mark", grid, args=["load"], depends_on=["transform"],
              alerts=AlertConfig(**QUIET))
    cluster.start_worker(pool="prefork", concurrency=2)
    beat = cluster.start_beat()
    wait_runs(admin, "load", 2, ("succeeded",), 30)

    def check_order(down: str, up: str) -> int:
        ups = [r for r in runs_of(admin, up) if r.status == "succeeded"]
        previous = None
        checked = 0
        for run in runs_of(admin, down):
            if run.sent_at is None:
                continue
            fresh = [u for u in ups if u.finished_at <= run.sent_at
                     and (previous is None or u.finished_at > previous)]
            assert fresh, f"{down} {run} sent before {up} succeeded again: {ups}"
            assert run.started_at is None or run.started_at >= max(
                u.finished_at for u in fresh)
            previous = run.sent_at
            checked += 1
        return checked

    assert check_order("transform", "extract") >= 2
    assert check_order("load", "transform") >= 2
    # Each transform waits for a fresh extract success (checked above); in steady state that
    # is the same period's extract and its 0.5 s.  (After a late start, catch-up runs can
    # pair a transform with the previous period's extract instead.)
    transforms = [r for r in runs_of(admin, "transform") if r.sent_at is not None]
    assert any((r.sent_at - r.scheduled_at).total_seconds() >= 0.5 for r in transforms), \
        transforms

    admin.update("extract", task="e2eapp.fail")
    broken = wait_runs(admin, "extract", 1, ("failed",), 15)[0]
    seen: set[str] = set()

    def transform_skipped() -> list:
        later = [r for r in runs_of(admin, "transform")
                 if r.scheduled_at >= broken.scheduled_at]
        seen.update(r.status for r in later)
        return [r for r in later if r.status == "skipped"]

    skipped = wait_for(transform_skipped, 15, "a transform occurrence to be skipped",
                       interval=0.1)
    assert "blocked" in seen, seen
    assert "did not succeed within one period" in skipped[0].reason, skipped[0]
    assert skipped[0].reason.startswith("dependency 'extract'"), skipped[0]
    wait_runs(admin, "load", 1, ("skipped",), 15,
              where=lambda r: r.scheduled_at >= broken.scheduled_at)
    assert beat.stop() == 0
    # Every run sent, before and after extract broke, followed a fresh upstream success
    # (an occurrence due right when extract broke may still follow its last success).
    check_order("transform", "extract")
    check_order("load", "transform")
    # Once a transform occurrence was skipped, no extract succeeded again: none was sent.
    sent_late = [r for r in runs_of(admin, "transform")
                 if r.scheduled_at > skipped[0].scheduled_at and r.sent_at is not None]
    assert sent_late == [], sent_late
    # What ran is what beat sent: one marker per executed run.
    executed = [m.task_id for m in cluster.markers()]
    assert len(executed) == len(set(executed))


# -- overlap -------------------------------------------------------------------------------


def test_overlap_skip_and_buffer_one(make_cluster, admin_for):
    # A buffered run is released by beat's follow-up check, once per beatx_sync_interval;
    # with 2 s (not the 1 s of the tasks' interval) occurrences fall due between two
    # checks, which is when one could overtake the buffered run.
    sync = 2.0
    cluster = make_cluster("redis", "mariadb", sync_interval=sync)
    admin = admin_for(cluster)
    admin.add("skipper", "e2eapp.sleep", every(seconds=1), args=["skipper", 3],
              overlap="skip", alerts=AlertConfig(**QUIET))
    admin.add("buffered", "e2eapp.sleep", every(seconds=1), args=["buffered", 3],
              overlap="buffer_one", alerts=AlertConfig(**QUIET))
    cluster.start_worker(pool="prefork", concurrency=4)
    beat = cluster.start_beat()
    wait_runs(admin, "buffered", 3, ("succeeded",), 30)
    wait_runs(admin, "skipper", 3, ("succeeded",), 30)
    admin.pause("skipper", "test over")
    admin.pause("buffered", "test over")
    time.sleep(1.5)
    assert beat.stop() == 0
    wait_for(lambda: not [r for n in ("skipper", "buffered") for r in runs_of(admin, n)
                          if r.status in ("sent", "started")], 15, "the last runs to end")

    for name in ("skipper", "buffered"):
        runs = runs_of(admin, name)
        assert overlapping(runs) == [], (name, overlapping(runs))
        times = sorted(m.time for m in cluster.markers(label=name))
        assert all(b - a >= 3.0 for a, b in zip(times, times[1:])), (name, times)
    skipped = [r for r in runs_of(admin, "skipper") if r.status == "skipped"]
    assert len(skipped) >= 4, runs_of(admin, "skipper")
    assert all(r.reason.startswith("overlap='skip'") for r in skipped), skipped

    executed = sorted((r for r in runs_of(admin, "buffered") if r.started_at is not None),
                      key=lambda r: r.started_at)
    assert len(executed) >= 3
    # The run kept while the previous one ran is the next to start (none overtakes it).
    order = [r.scheduled_at for r in executed]
    assert order == sorted(order), [(r.scheduled_at, r.started_at) for r in executed]
    assert not [r for r in runs_of(admin, "buffered") if r.status == "buffered"
                and r.scheduled_at < executed[-1].scheduled_at]
    gaps = [(b.started_at - a.finished_at).total_seconds()
            for a, b in zip(executed, executed[1:])]
    assert all(0 <= g < sync + 0.6 for g in gaps), gaps  # released at the next check
    waiting = [r for r in runs_of(admin, "buffered") if r.status == "skipped"]
    assert all(r.reason.startswith("overlap='buffer_one'") for r in waiting), waiting


# -- catch-up and jitter ---------------------------------------------------------------------

CATCHUP_EVERY = 4.0
MISSED = 5
JITTER = 6.0


def test_catchup_after_downtime_and_jitter_across_a_restart(make_cluster, admin_for):
    cluster = make_cluster("redis", "postgresql")
    admin = admin_for(cluster)
    grid = every(seconds=CATCHUP_EVERY, anchor=ANCHOR)
    cluster.start_worker(pool="prefork", concurrency=2)
    started = time.monotonic()
    beat = cluster.start_beat()
    startup = time.monotonic() - started
    # Added once beat runs (a loaded machine can take longer than one interval to start a
    # beat): all three are then sent from the same first occurrence on.
    for mode in ("skip", "once", "all"):
        admin.add(f"c-{mode}", "e2eapp.mark", grid, args=[f"c-{mode}"], catchup=mode,
                  catchup_limit=10)
    wait_runs(admin, "c-all", 1, ("succeeded",), 20)

    # Stop beat; start another so that its first tick falls in the middle of the interval
    # after the 5th missed occurrence.
    assert beat.stop() == 0
    last = max(r.scheduled_at for r in runs_of(admin, "c-all"))
    assert {max(r.scheduled_at for r in runs_of(admin, f"c-{m}")) for m in
            ("skip", "once")} == {last}
    back = last + timedelta(seconds=(MISSED + 0.5) * CATCHUP_EVERY)

    # A jittered task whose occurrence falls just after the restart, delayed 3-6 s: the
    # beat that computed its fire time is gone; the next one sends it at that same time.
    target = back + timedelta(seconds=1)
    name = next(f"jit-{i}" for i in range(1000)
                if 3.0 <= jitter_offset(f"jit-{i}", target, JITTER) <= JITTER)
    offset = jitter_offset(name, target, JITTER)
    admin.add(name, "e2eapp.mark", every(seconds=60, anchor=target), args=["jit"],
              jitter=JITTER, catchup="skip")
    assert admin.get(name).next_run_at == target

    wait_for(lambda: now() >= back - timedelta(seconds=startup), 60, "the downtime to pass")
    beat = cluster.start_beat()
    restarted = now()
    missed = grid_between(last, restarted, CATCHUP_EVERY)[:MISSED]
    wait_runs(admin, "c-all", MISSED, ("succeeded",), 20,
              where=lambda r: r.kind == "catchup" and r.scheduled_at > last)
    sent = wait_runs(admin, name, 1, ("sent", "started", "succeeded"), 20)
    assert [r.task_id for r in sent] == [run_task_id(name, target, 0)], sent
    late = (sent[0].sent_at - target).total_seconds()
    assert abs(late - offset) <= 0.7, (late, offset)
    assert beat.stop() == 0

    def after(mode: str) -> list:
        return [r for r in runs_of(admin, f"c-{mode}") if last < r.scheduled_at <= missed[-1]]

    sent_all = [r for r in after("all") if r.status != "skipped"]
    assert [r.scheduled_at for r in sent_all] == missed, (sent_all, missed)
    assert [r.task_id for r in sent_all] == [run_task_id("c-all", t, 0) for t in missed]
    assert {r.kind for r in sent_all} == {"catchup"}
    sent_once = [r for r in after("once") if r.status != "skipped"]
    assert [(r.scheduled_at, r.kind) for r in sent_once] == [(missed[0], "catchup")]
    assert sent_once[0].task_id == run_task_id("c-once", missed[0], 0)
    assert [r for r in after("skip") if r.status != "skipped"] == []
    skipped = [r for r in after("skip") if r.status == "skipped"]
    assert [r.scheduled_at for r in skipped] == [missed[0]], skipped
    assert "catchup='skip'" in skipped[0].reason
    for mode in ("skip", "once", "all"):  # then back on the grid
        info = admin.get(f"c-{mode}")
        assert info.next_run_at is not None and info.next_run_at > missed[-1], info
        assert ((info.next_run_at - ANCHOR).total_seconds() % CATCHUP_EVERY) == 0, info
    executed = [m.task_id for m in cluster.markers()]
    assert len(executed) == len(set(executed))


# -- stuck, pause, resume, backfill, run_now -------------------------------------------------


def test_killed_worker_pause_resume_backfill_run_now(make_cluster, admin_for):
    cluster = make_cluster("redis", "sqlite")
    admin = admin_for(cluster)
    created = now()
    admin.add("hang", "e2eapp.sleep", every(hours=1), args=["hang", 60],
              alerts=AlertConfig(stuck_seconds=2, **QUIET))
    admin.add("p", "e2eapp.mark", every(seconds=2, anchor=ANCHOR), args=["p"],
              alerts=AlertConfig(**QUIET))
    admin.add("r", "e2eapp.mark", every(seconds=60), args=["r"], alerts=AlertConfig(**QUIET))
    worker = cluster.start_worker(pool="prefork", concurrency=2)
    beat = cluster.start_beat()

    # A worker killed with kill -9 in the middle of a run: the run stays "started" until
    # beat marks it stuck (stuck_seconds 2, checked every 10 s).
    hung = admin.run_now("hang")
    wait_runs(admin, "hang", 1, ("started",), 20)
    kill9_with_children(worker)
    killed = time.monotonic()
    worker = cluster.start_worker(pool="prefork", concurrency=2)
    stuck = wait_runs(admin, "hang", 1, ("stuck",), 25)[0]
    assert stuck.task_id == hung.task_id and stuck.finished_at is None, stuck
    assert "started and not finished within 2 s" in stuck.reason, stuck
    assert time.monotonic() - killed >= 2
    report = admin.health()
    assert hung.task_id in [s.task_id for s in report.stuck], report.stuck
    assert report.stuck_count >= 1

    # Pause: nothing is sent; reason, who and when are kept.
    wait_runs(admin, "p", 1, ("succeeded",), 20)
    paused = admin.pause("p", reason="maintenance window")
    assert paused.paused_reason == "maintenance window" and paused.paused_by
    assert paused.paused_at is not None and abs((paused.paused_at - now()).total_seconds()) < 5
    settled = now() + timedelta(seconds=1.5)  # the beat sees the pause within a poll
    time.sleep(7)
    assert [r for r in runs_of(admin, "p") if r.scheduled_at > settled] == []
    info = admin.get("p")
    assert info.paused and info.paused_reason == "maintenance window"
    last_before = max(r.scheduled_at for r in runs_of(admin, "p"))

    # Resume: one run for the missed occurrences (catchup="once"), then the grid again.
    resumed_at = now()
    info = admin.resume("p")
    assert not info.paused and info.paused_reason is None and info.paused_by is None
    catchup = wait_runs(admin, "p", 1, ("succeeded",), 15,
                        where=lambda r: r.kind == "catchup" and r.scheduled_at > last_before)
    missed = grid_between(last_before, resumed_at, 2.0)
    assert len(missed) >= 3, missed
    assert [r.scheduled_at for r in catchup] == [missed[0]], (catchup, missed)
    wait_runs(admin, "p", 1, ("succeeded",), 15,
              where=lambda r: r.kind == "scheduled" and r.scheduled_at > resumed_at)

    # Backfill: the occurrences of a window before the task existed, each once; the paused
    # window: only the occurrences that have no run yet.  Twice: nothing new.
    start = grid_after(created - timedelta(seconds=30), 2.0)
    end = start + timedelta(seconds=10)
    window = [start + timedelta(seconds=2 * i) for i in range(5)]
    assert admin.backfill("p", start, end) == 5
    assert admin.backfill("p", missed[0], missed[-1] + timedelta(seconds=1)) \
        == len(missed) - 1
    assert admin.backfill("p", start, end) == 0
    assert admin.backfill("p", missed[0], missed[-1] + timedelta(seconds=1)) == 0
    expected = {run_task_id("p", t, 0) for t in window + missed[1:]}
    done = wait_runs(admin, "p", len(expected), ("succeeded",), 20,
                     where=lambda r: r.kind == "backfill")
    assert {r.task_id for r in done} == expected
    time.sleep(1.5)
    assert len([r for r in runs_of(admin, "p") if r.kind == "backfill"]) == len(expected)

    # run_now: one extra run, recorded as manual; the schedule does not move.
    before = admin.get("r")
    assert before.next_run_at is not None and before.next_run_at > now()
    extra = admin.run_now("r")
    assert extra.kind == "manual" and extra.attempt == 0
    ran = wait_runs(admin, "r", 1, ("succeeded",), 15, where=lambda r: r.kind == "manual")
    assert [r.task_id for r in ran] == [extra.task_id]
    time.sleep(1.5)  # a poll and a tick later
    after = admin.get("r")
    assert after.next_run_at == before.next_run_at, (before.next_run_at, after.next_run_at)
    assert [r.kind for r in runs_of(admin, "r")] == ["manual"]
    assert beat.stop() == 0

    executed = [m.task_id for m in cluster.markers()]
    assert len(executed) == len(set(executed)), "a run executed twice"
    assert worker.running()
