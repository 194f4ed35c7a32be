"""Schedule conflicts: different tasks that fire within ``window`` seconds of each other.

Pure: no database, no Celery.  :func:`find_conflicts` takes each task's fire times within
the horizon and sweeps them in time order, O(F log F + P) for F fire times and P pairs of
fire times that are close.  Tasks whose fire times are identical (same schedule, same next
run, no jitter: the common case of many copies of one job) are one *group*: their fire
times are computed and swept once, and every pair inside a group conflicts at each of its
fire times.

Severity of a pair (see README, "Conflicts"):

- *closeness* ``c = overlap_seconds / window`` (1 when they fire at the same moment);
  ``overlap_seconds = window - |t1 - t2|`` for their closest pair of fire times;
- *share* ``s``: how many of the less frequent task's fire times collide, as a fraction;
- ``high`` when ``c >= 0.9`` and ``s >= 0.5`` (they nearly coincide, at least every other
  time), ``medium`` when ``c >= 0.5`` or ``s >= 0.5``, else ``low``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .policies import jitter_offset
from .schedules import BaseSchedule, every

UTC = timezone.utc
SEVERITIES = ("low", "medium", "high")
#: The most fire times one task contributes within the horizon (an every-second task over a
#: day has 86,400).
MAX_FIRES = 200_000


@dataclass(frozen=True)
class Conflict:
    """Tasks ``task1`` and ``task2`` (in name order) fire within the window of each other.

    ``at`` is the first time it happens (the earlier fire time), ``overlap_seconds`` how
    much their windows overlap at their closest (``window`` when they fire together),
    ``count`` how many times it happens within the horizon.
    """

    task1: str
    task2: str
    at: datetime
    overlap_seconds: float
    severity: str
    count: int = 1


@dataclass(frozen=True)
class FireSource:
    """One task as the sweep sees it."""

    name: str
    schedule: BaseSchedule
    #: Its stored next run (``None``: computed from ``last_run_at``).
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    jitter: float = 0.0
    #: The stored schedule and calendar (identical ones group tasks together).
    key: str = ""


def fire_times(source: FireSource, start: datetime, end: datetime) -> list[float]:
    """The task's fire times (POSIX seconds) from ``start`` up to ``end``: its stored next
    run (``start`` if that is already past: it is sent at once), then its schedule."""
    schedule = source.schedule
    first = source.next_run_at
    if first is None:
        first = schedule.next_after(start, source.last_run_at)
    if first is None or first > end:
        return []
    anchor = max(first, start)
    out: list[float] = []
    if type(schedule) is every and schedule.anchor is None:
        step = schedule.seconds
        base, stop = anchor.timestamp(), end.timestamp()
        count = min(int((stop - base) // step) + 1, MAX_FIRES)
        out = [base + k * step for k in range(count)]
        if source.jitter > 0:
            out = [t + jitter_offset(source.name, datetime.fromtimestamp(t, UTC),
                                     source.jitter) for t in out]
        return out
    current: datetime | None = anchor
    while current is not None and current <= end and len(out) < MAX_FIRES:
        offset = jitter_offset(source.name, current, source.jitter) if source.jitter else 0.0
        out.append(current.timestamp() + offset)
        current = schedule.next_after(current, current)
    return out


def severity_of(overlap: float, window: float, collisions: int, fewest: int) -> str:
    """The severity rule of the module docstring."""
    closeness = overlap / window if window > 0 else 1.0
    share = min(1.0, collisions / fewest) if fewest else 0.0
    if closeness >= 0.9 and share >= 0.5:
        return "high"
    if closeness >= 0.5 or share >= 0.5:
        return "medium"
    return "low"


def _group_key(source: FireSource) -> str:
    if source.jitter > 0:
        return f"jitter:{source.name}"
    first = source.next_run_at.isoformat() if source.next_run_at else \
        f"last:{source.last_run_at.isoformat() if source.last_run_at else ''}"
    return f"{source.key or json.dumps(source.schedule.to_dict(), sort_keys=True)}|{first}"


def find_conflicts(sources: Iterable[FireSource], *, window: float, start: datetime,
                   horizon: timedelta, high_severity: bool = False,
                   limit: int | None = None) -> list[Conflict]:
    """Every pair of different tasks with fire times within ``window`` seconds of each
    other between ``start`` and ``start + horizon``; most severe first, then by time.

    :param high_severity: only ``high`` ones.
    :param limit: at most this many (the most severe).
    """
    end = start + horizon
    groups: dict[str, list[str]] = {}
    times: dict[str, list[float]] = {}
    for source in sources:
        key = _group_key(source)
        if key not in groups:
            groups[key] = []
            times[key] = fire_times(source, start, end)
        groups[key].append(source.name)
    keys = [k for k in groups if times[k]]
    index = {k: i for i, k in enumerate(keys)}
    events = sorted((t, index[k]) for k in keys for t in times[k])
    # Per pair of groups: [first time, best overlap, collisions]
    pairs: dict[tuple[int, int], list[float]] = {}
    count = len(events)
    for i in range(count):
        t1, g1 = events[i]
        j = i + 1
        while j < count:
            t2, g2 = events[j]
            gap = t2 - t1
            if gap > window:
                break
            j += 1
            if g1 == g2:
                continue
            key2 = (g1, g2) if g1 < g2 else (g2, g1)
            overlap = window - gap
            found = pairs.get(key2)
            if found is None:
                pairs[key2] = [t1, overlap, 1]
            else:
                found[2] += 1
                if overlap > found[1]:
                    found[1] = overlap
    ranked: list[tuple[int, float, list[str], list[str], float, float, int]] = []
    for (a, b), (first, overlap, hits) in pairs.items():
        fewest = min(len(times[keys[a]]), len(times[keys[b]]))
        severity = severity_of(overlap, window, int(hits), fewest)
        ranked.append((SEVERITIES.index(severity), first, groups[keys[a]], groups[keys[b]],
                       overlap, first, int(hits)))
    for k in keys:
        if len(groups[k]) > 1:  # members of a group fire together every time
            fires = times[k]
            severity = severity_of(window, window, len(fires), len(fires))
            ranked.append((SEVERITIES.index(severity), fires[0], groups[k], groups[k],
                           float(window), fires[0], len(fires)))
    if high_severity:
        ranked = [r for r in ranked if SEVERITIES[r[0]] == "high"]
    ranked.sort(key=lambda r: (-r[0], r[1], min(r[2]), min(r[3])))
    out: list[Conflict] = []
    for rank, _, members1, members2, overlap, first, hits in ranked:
        at = datetime.fromtimestamp(first, UTC)
        for one, two in _member_pairs(members1, members2):
            out.append(Conflict(one, two, at, round(overlap, 6), SEVERITIES[rank], hits))
            if limit is not None and len(out) >= limit:
                return out
    return out


def _member_pairs(first: Sequence[str], second: Sequence[str]) -> Iterable[tuple[str, str]]:
    if first is second:
        names = sorted(first)
        for i, one in enumerate(names):
            for two in names[i + 1:]:
                yield one, two
        return
    for one in sorted(first):
        for two in sorted(second):
            yield (one, two) if one < two else (two, one)
