"""conflicts() on 10,000 tasks over one day answers in seconds (benchmarks/bench_conflicts.py).

The bound is loose (the machine is shared): it catches a sweep that went quadratic, which on
this mix would take minutes.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_conflicts.py"


def test_ten_thousand_tasks_over_a_day_in_seconds():
    spec = importlib.util.spec_from_file_location("bench_conflicts", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    specs = bench.task_specs(10_000)
    started = time.perf_counter()
    seconds, sources, found = bench.pure(specs, 60.0)
    assert time.perf_counter() - started < 30, seconds
    assert sources == 10_000
    pairs = {(c.task1, c.task2) for c in found}
    assert len(pairs) == len(found)  # each pair once
    assert all(c.task1 < c.task2 for c in found[:1000])
    severities = [c.severity for c in found]
    assert severities == sorted(severities, key=("high", "medium", "low").index)
