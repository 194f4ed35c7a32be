"""Helpers of the run-outcome end-to-end tests (:mod:`test_outcomes_live`): waiting for run
rows, anchored grids of fire times, and killing a prefork worker with its children."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from harness import Proc, wait_for

UTC = timezone.utc
#: The grid every anchored test schedule is on (multiples of its interval since then).
ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
#: Statuses of a run that will not change any more (``stuck`` may: a late start wins).
FINAL = ("succeeded", "failed", "revoked", "skipped")


def runs_of(admin: Any, name: str) -> list[Any]:
    """Every kept run of ``name``, oldest first."""
    return sorted(admin.history(name, limit=1000), key=lambda r: (r.scheduled_at, r.attempt))


def wait_runs(admin: Any, name: str, count: int, statuses: tuple[str, ...], timeout: float,
              where: Callable[[Any], bool] | None = None) -> list[Any]:
    """Wait until ``name`` has at least ``count`` runs in ``statuses`` (and matching
    ``where``); return those, oldest first."""
    def enough() -> list[Any] | None:
        found = [r for r in runs_of(admin, name) if r.status in statuses
                 and (where is None or where(r))]
        return found if len(found) >= count else None

    try:
        return wait_for(enough, timeout, f"{count} run(s) of {name} in {statuses}",
                        interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the runs: {runs_of(admin, name)}") from None


def grid_after(at: datetime, interval: float, steps: int = 1) -> datetime:
    """The ``steps``-th point of the ``interval`` grid (from :data:`ANCHOR`) after ``at``."""
    elapsed = (at - ANCHOR).total_seconds()
    index = int(elapsed // interval) + steps
    return ANCHOR + timedelta(seconds=index * interval)


def grid_between(start: datetime, end: datetime, interval: float) -> list[datetime]:
    """The grid points in ``(start, end]``."""
    out = []
    point = grid_after(start, interval)
    while point <= end:
        out.append(point)
        point += timedelta(seconds=interval)
    return out


def children(pid: int) -> list[int]:
    """The direct children of process ``pid`` (from /proc; Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return found


def kill9_with_children(proc: Proc) -> list[int]:
    """SIGKILL a worker and its pool processes at once (a machine-level crash: nothing of
    it runs any more, no signal handler reports anything); returns the killed pids."""
    pids = children(proc.popen.pid)
    proc.kill9()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [proc.popen.pid, *pids]


def overlapping(runs: Iterable[Any]) -> list[tuple[Any, Any]]:
    """Pairs of runs whose [started_at, finished_at] intervals overlap."""
    executed = sorted((r for r in runs if r.started_at is not None),
                      key=lambda r: r.started_at)
    pairs = []
    for before, after in zip(executed, executed[1:]):
        end = before.finished_at
        if end is None or after.started_at < end:
            pairs.append((before, after))
    return pairs
