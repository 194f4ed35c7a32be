"""The fire times of a schedule within a window (what a backfill sends).  Pure: no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..errors import InvalidSchedule
from .base import BaseSchedule, every, require_aware
from .calendar import calendar_filtered

_TICK = timedelta(microseconds=1)


def occurrences(schedule: BaseSchedule, start: datetime, end: datetime, *,
                reference: datetime | None = None, limit: int = 10_000) -> list[datetime]:
    """Fire times of ``schedule`` in ``[start, end)``, oldest first.

    An interval without an ``anchor`` fires on the grid through ``reference`` (a time it
    fired or will fire at, such as the task's next run), as beat keeps it on the grid; with
    no reference its grid starts at ``start``.  Every other kind fires at its own times.
    A calendar-filtered schedule is followed exactly as beat follows it.

    :raises InvalidSchedule: a naive ``start``/``end``, ``end`` not after ``start``, or more
        than ``limit`` fire times in the window (naming ``end``: ask for a shorter one).
    """
    start = require_aware(start, "start")
    end = require_aware(end, "end")
    if end <= start:
        raise InvalidSchedule(f"end {end.isoformat()!r} is not after start "
                              f"{start.isoformat()!r}", "end")
    inner = schedule.schedule if isinstance(schedule, calendar_filtered) else schedule
    if isinstance(inner, every) and inner.anchor is None:
        step = inner.interval
        ref = require_aware(reference, "reference") if reference is not None else start
        # The first grid point at or after start: ref + k * step with k = ceil((start-ref)/step).
        grid = ref + step * -((ref - start) // step)
        when = schedule.next_after(grid - _TICK, grid - step)
    else:
        when = schedule.next_after(start - _TICK, None)
    found: list[datetime] = []
    while when is not None and when < end:
        if len(found) == limit:
            raise InvalidSchedule(
                f"the window {start.isoformat()} to {end.isoformat()} holds more than "
                f"{limit} fire times; backfill a shorter window at a time", "end")
        found.append(when)
        when = schedule.next_after(when, when)
    return found
