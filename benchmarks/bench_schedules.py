"""Cost of ``next_after`` per schedule kind, and of calendar searches across blackouts.

Run: ``.venv/bin/python benchmarks/bench_schedules.py`` (about 10 s).  Prints microseconds per
call and, for calendar-filtered schedules, how the cost changes with the blackout length
(it must not grow: the search jumps to the end of a blackout).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from celery_beatx.schedules import (
    Calendar,
    all_of,
    any_of,
    calendar_filtered,
    cron,
    crontab,
    every,
    solar,
)
from celery_beatx.schedules.base import BaseSchedule

UTC = timezone.utc
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class Counting(BaseSchedule):
    """Wraps a schedule and counts its ``next_after`` calls (search cost, not time)."""

    type = "bench_counting"

    def __init__(self, inner: BaseSchedule) -> None:
        self.inner, self.calls = inner, 0

    def next_after(self, after, last_run_at=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.inner.next_after(after, last_run_at)

    def to_dict(self):  # type: ignore[no-untyped-def]
        return {"type": self.type, "inner": self.inner.to_dict()}


def per_call_us(schedule: BaseSchedule, calls: int) -> tuple[float, float]:
    """Median and p95 microseconds of ``next_after`` over ``calls`` start points."""
    starts = [START + timedelta(minutes=37 * i) for i in range(calls)]
    samples = []
    for start in starts:
        began = time.perf_counter()
        schedule.next_after(start, start)
        samples.append((time.perf_counter() - began) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--output", default=str(Path(__file__).with_name(
        "results-schedules-latest.json")))
    args = parser.parse_args()

    business = Calendar(business_hours=("09:00", "17:00"), weekdays=(0, 1, 2, 3, 4),
                        holidays="US", timezone="America/New_York")
    kinds: dict[str, BaseSchedule] = {
        "every(minutes=5)": every(minutes=5),
        "crontab(0, 9, mon-fri) UTC": crontab(0, 9, "mon-fri"),
        "crontab(*/15, Europe/London)": crontab("*/15", timezone="Europe/London"),
        "crontab(0, 9, fri, 13) Friday-13th": crontab(0, 9, "fri", 13),
        "cron('30 2 * * *', Lord_Howe)": cron("30 2 * * *", timezone="Australia/Lord_Howe"),
        "solar(sunrise, London)": solar("sunrise", 51.5, -0.13),
        "solar(dusk_civil, Tromso)": solar("dusk_civil", 69.65, 18.96),
        "any_of(cron, cron)": any_of(cron("0 9 * * *"), cron("0 17 * * *")),
        "all_of(*/10, */15)": all_of(cron("*/10 * * * *"), cron("*/15 * * * *")),
        "calendar_filtered(*/15, US business)": calendar_filtered(
            cron("*/15 * * * *", timezone="America/New_York"), business),
    }
    rows = []
    print(f"next_after per call over {args.calls} start points (microseconds)\n")
    print(f"{'schedule':42} {'median':>9} {'p95':>9}")
    for name, schedule in kinds.items():
        median, p95 = per_call_us(schedule, args.calls)
        rows.append({"schedule": name, "median_us": median, "p95_us": p95})
        print(f"{name:42} {median:9.1f} {p95:9.1f}")

    print("\ncalendar-filtered search across a blackout that covers the start:")
    print(f"{'blackout length':18} {'inner calls':>12} {'us per call':>12}")
    blackout_rows = []
    for days in (1, 30, 365, 730):
        counting = Counting(cron("*/5 * * * *"))
        calendar = Calendar(business_hours=None, weekdays=None,
                            blackouts=[(START - timedelta(hours=1),
                                        START + timedelta(days=days))])
        schedule = calendar_filtered(counting, calendar)
        began = time.perf_counter()
        for _ in range(200):
            schedule.next_after(START)
        micros = (time.perf_counter() - began) / 200 * 1e6
        calls = counting.calls / 200
        blackout_rows.append({"blackout_days": days, "inner_calls": calls, "us": micros})
        print(f"{str(days) + ' days':18} {calls:12.1f} {micros:12.1f}")
    Path(args.output).write_text(json.dumps(
        {"date": datetime.now(UTC).isoformat(), "calls": args.calls, "kinds": rows,
         "blackouts": blackout_rows}, indent=2))
    print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    main()
