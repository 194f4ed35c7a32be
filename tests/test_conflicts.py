"""conflicts(): exact pairs on a crafted set (pure sweep and through BeatAdmin)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celery_beatx import InvalidSchedule, cron, every, once
from celery_beatx.conflicts import FireSource, find_conflicts, severity_of

UTC = timezone.utc
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday


def src(name, schedule, next_run_at=None, jitter=0.0):  # noqa: ANN001, ANN201
    return FireSource(name, schedule, next_run_at or schedule.next_after(START, None),
                      None, jitter)


def test_severity_rule():
    assert severity_of(60, 60, 24, 24) == "high"        # together, every time
    assert severity_of(55, 60, 12, 24) == "high"        # 5 s apart, half the time
    assert severity_of(55, 60, 1, 24) == "medium"       # close, but once a day
    assert severity_of(10, 60, 24, 24) == "medium"      # 50 s apart, every time
    assert severity_of(10, 60, 1, 24) == "low"          # 50 s apart, once
    assert severity_of(0, 0, 1, 1) == "high"            # window 0: only exact matches


def test_crafted_set_gives_exactly_the_expected_pairs():
    sources = [
        src("hourly_a", cron("0 * * * *")),
        src("hourly_b", cron("0 * * * *")),           # same schedule as hourly_a
        src("hourly_30s", every(hours=1), START + timedelta(hours=1, seconds=30)),
        src("daily_0905", cron("5 9 * * *")),
        src("daily_0906", cron("6 9 * * *")),         # 60 s after daily_0905: at the edge
        src("daily_0907", cron("7 9 * * *")),         # 120 s after daily_0905: no
        src("lonely", cron("30 15 * * *")),
        src("once_1500", once(START + timedelta(hours=15, seconds=20))),
        src("far_future", once(START + timedelta(days=3))),  # beyond the horizon
    ]
    found = find_conflicts(sources, window=60, start=START, horizon=timedelta(days=1))
    pairs = {(c.task1, c.task2): c for c in found}
    assert set(pairs) == {
        ("hourly_a", "hourly_b"), ("hourly_30s", "hourly_a"), ("hourly_30s", "hourly_b"),
        ("daily_0905", "daily_0906"), ("daily_0906", "daily_0907"),
        ("hourly_a", "once_1500"), ("hourly_b", "once_1500"),
        ("hourly_30s", "once_1500"),
    }
    same = pairs[("hourly_a", "hourly_b")]
    assert (same.severity, same.overlap_seconds, same.at) == ("high", 60.0,
                                                              START + timedelta(hours=1))
    assert same.count == 24
    half = pairs[("hourly_30s", "hourly_a")]
    assert (half.overlap_seconds, half.severity, half.at) == (
        30.0, "medium", START + timedelta(hours=1))
    edge = pairs[("daily_0905", "daily_0906")]
    assert (edge.overlap_seconds, edge.count, edge.severity) == (0.0, 1, "medium")
    one = pairs[("hourly_30s", "once_1500")]
    assert (one.overlap_seconds, one.count) == (50.0, 1)
    assert found[0].severity == "high"  # most severe first
    high = find_conflicts(sources, window=60, start=START, horizon=timedelta(days=1),
                          high_severity=True)
    assert [(c.task1, c.task2) for c in high] == [("hourly_a", "hourly_b")]
    assert len(find_conflicts(sources, window=60, start=START, horizon=timedelta(days=1),
                              limit=3)) == 3
    # a shorter window drops the 30 s and 60 s pairs (the one-off is 20 s after the hour
    # and 10 s before hourly_30s)
    narrow = find_conflicts(sources, window=20, start=START, horizon=timedelta(days=1))
    assert {(c.task1, c.task2) for c in narrow} == {
        ("hourly_a", "hourly_b"), ("hourly_a", "once_1500"), ("hourly_b", "once_1500"),
        ("hourly_30s", "once_1500")}


def test_jitter_moves_fire_times():
    sources = [src("a", cron("0 3 * * *")), src("b", cron("0 3 * * *"), jitter=3000)]
    found = find_conflicts(sources, window=1, start=START, horizon=timedelta(days=1))
    assert found == []


def test_through_the_admin_api(admin, clock):
    clock.now = START
    admin.add("a", "t.a", cron("0 2 * * *"))
    admin.add("b", "t.b", cron("0 2 * * *"))
    admin.add("c", "t.c", cron("0 2 * * *"), enabled=False)
    admin.add("d", "t.d", cron("30 4 * * *"))
    found = admin.conflicts()
    assert [(c.task1, c.task2, c.at, c.severity) for c in found] == [
        ("a", "b", START + timedelta(hours=2), "high")]
    assert admin.conflicts(horizon=timedelta(hours=1)) == []
    with pytest.raises(InvalidSchedule, match="window"):
        admin.conflicts(window=-1)
    with pytest.raises(InvalidSchedule, match="horizon"):
        admin.conflicts(horizon=timedelta(0))
