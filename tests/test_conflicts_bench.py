"""conflicts() on the benchmark's 10,000 tasks over one day (benchmarks/bench_conflicts.py):
every task is swept, each pair is reported once, in severity order.

How long it takes is the benchmark's figure (about 4 s on this machine), not a test's: a
timing assert fails on a loaded machine without anything being wrong.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_conflicts.py"


def test_ten_thousand_tasks_over_a_day_give_each_pair_once_in_severity_order():
    spec = importlib.util.spec_from_file_location("bench_conflicts", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    specs = bench.task_specs(10_000)
    _seconds, sources, found = bench.pure(specs, 60.0)
    assert sources == 10_000 and found
    pairs = {(c.task1, c.task2) for c in found}
    assert len(pairs) == len(found)  # each pair once
    assert all(c.task1 < c.task2 for c in found[:1000])
    severities = [c.severity for c in found]
    assert severities == sorted(severities, key=("high", "medium", "low").index)
