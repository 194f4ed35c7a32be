"""The pure decisions of the send path: catch-up, starting deadline, jitter (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_beatx import cron, every, once
from celery_beatx.policies import (
    BUFFER,
    CATCHUP,
    SCHEDULED,
    SEND,
    SKIP,
    fire_time,
    gate,
    jitter_offset,
    plan_due,
)

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_on_time_occurrence_is_sent_and_the_next_follows_on_the_grid():
    plan = plan_due(every(seconds=10), at(10), at(10.3))
    assert plan.sends == ((at(10), SCHEDULED),)
    assert plan.following == at(20)
    assert plan.skipped == ()


def test_a_little_late_is_still_on_time_within_grace():
    plan = plan_due(every(seconds=60), at(60), at(63), grace=5)
    assert plan.sends == ((at(60), SCHEDULED),) and plan.following == at(120)


@pytest.mark.parametrize("catchup, sent, skipped", [
    ("once", [at(10)], 0),
    ("skip", [], 1),
    ("all", [at(10), at(20), at(30), at(40), at(50)], 0),
])
def test_catchup_after_downtime_covering_five_occurrences(catchup, sent, skipped):
    # due at 10, 20, 30, 40, 50; beat comes back at 55
    plan = plan_due(every(seconds=10), at(10), at(55), catchup=catchup)
    assert [when for when, _ in plan.sends] == sent
    assert all(kind == CATCHUP for _, kind in plan.sends)
    assert len(plan.skipped) == skipped
    if catchup == "all":
        assert plan.following == at(60)  # stays on the grid
    else:
        assert plan.following == at(65)  # re-anchored on the send, as Celery does


def test_all_stops_at_catchup_limit_and_records_the_rest_as_skipped():
    plan = plan_due(every(seconds=10), at(10), at(95), catchup="all", catchup_limit=3)
    assert [w for w, _ in plan.sends] == [at(10), at(20), at(30)]
    assert len(plan.skipped) == 1 and plan.skipped[0].scheduled_at == at(40)
    assert "catchup_limit" in plan.skipped[0].reason
    assert plan.following == at(105)


def test_skip_of_a_single_late_occurrence():
    plan = plan_due(cron("0 * * * *"), at(3600), at(3600 + 600), catchup="skip")
    assert plan.sends == ()
    assert plan.skipped[0].scheduled_at == at(3600)
    assert plan.following == at(7200)


def test_starting_deadline_drops_older_cron_occurrences_whatever_the_policy():
    schedule = cron("*/15 * * * *")
    # missed 12:15 ... 13:00; deadline 20 min at 13:05 keeps only 12:45 and 13:00
    now = T0 + timedelta(hours=1, minutes=5)
    plan = plan_due(schedule, at(900), now, catchup="all", starting_deadline=1200)
    assert [w for w, _ in plan.sends] == [T0 + timedelta(minutes=45), T0 + timedelta(hours=1)]
    assert "beat_cron_starting_deadline" in plan.skipped[0].reason
    # nothing inside the deadline: nothing sent, next run in the future
    plan = plan_due(schedule, at(900), T0 + timedelta(hours=1, minutes=10), catchup="once",
                    starting_deadline=60)
    assert plan.sends == () and plan.following == T0 + timedelta(hours=1, minutes=15)


def test_one_off_runs_once_and_has_no_following():
    plan = plan_due(once(at(30)), at(30), at(31))
    assert plan.sends == ((at(30), SCHEDULED),) and plan.following is None
    # missed by a long downtime: still sent once under the default policy
    plan = plan_due(once(at(30)), at(30), at(3000))
    assert plan.sends == ((at(30), CATCHUP),) and plan.following is None


def test_jitter_is_fixed_per_occurrence_and_within_bounds():
    offsets = [jitter_offset("job", at(10 * i), 30) for i in range(200)]
    assert all(0 <= o <= 30 for o in offsets)
    assert len(set(offsets)) > 150  # spread, not constant
    assert offsets == [jitter_offset("job", at(10 * i), 30) for i in range(200)]  # stable
    assert jitter_offset("other", at(0), 30) != jitter_offset("job", at(0), 30)
    assert jitter_offset("job", at(0), 0) == 0
    assert fire_time("job", at(10), 30) == at(10) + timedelta(seconds=offsets[1])


def test_lateness_counts_from_the_jittered_time():
    delay = lambda when: 20.0  # noqa: E731 - every occurrence jittered by 20 s
    plan = plan_due(every(seconds=60), at(60), at(81), grace=5, delay=delay)
    assert plan.sends == ((at(60), SCHEDULED),)  # 1 s after its fire time: on time
    plan = plan_due(every(seconds=60), at(60), at(90), grace=5, delay=delay, catchup="skip")
    assert plan.sends == ()  # 10 s after its fire time: missed


@pytest.mark.parametrize("running, buffered, action", [
    (0, False, SEND), (1, False, BUFFER), (1, True, SKIP),
    # The previous run finished but the kept one was not released yet: it goes first.
    (0, True, SKIP),
])
def test_buffer_one_never_lets_an_occurrence_overtake_the_kept_one(running, buffered, action):
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    verdict = gate(scheduled=at, following=at + timedelta(seconds=1), now=at,
                   overlap="buffer_one", running=running, buffered=buffered)
    assert verdict.action == action
