"""Pure decisions of the send path: which occurrences of a due task are sent, which are
skipped (and why), and when the task is next due.

No database, no Celery: the scheduler gathers the inputs (the task's definition and state,
and ``now``) and carries out the answer.  Everything here is a plain function of its
arguments and is tested without a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .schedules import BaseSchedule

#: The most catch-up occurrences looked at in one decision, whatever ``catchup_limit`` says.
MAX_CATCHUP = 10_000
#: An occurrence sent less than this after its (jittered) due time is on time, not missed.
DEFAULT_GRACE = 5.0

SCHEDULED, CATCHUP = "scheduled", "catchup"


def jitter_offset(name: str, scheduled: datetime, jitter: float) -> float:
    """The delay in ``[0, jitter]`` seconds of one occurrence of task ``name``.

    Derived from the task name and the scheduled time, so every beat (and every restart)
    computes the same delay for the same occurrence: nothing needs to be stored.
    """
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}\x00{scheduled.isoformat()}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / float(1 << 64)
    return round(fraction * jitter, 6)


def fire_time(name: str, scheduled: datetime, jitter: float) -> datetime:
    """When the occurrence ``scheduled`` is actually sent (``scheduled`` + its jitter)."""
    return scheduled + timedelta(seconds=jitter_offset(name, scheduled, jitter))


@dataclass(frozen=True)
class Skipped:
    """Occurrences not sent: the first one's time, how many (at least), and why."""

    scheduled_at: datetime
    count: int
    reason: str


@dataclass(frozen=True)
class DuePlan:
    """What to do with a task whose next occurrence is due.

    ``sends``: ``(scheduled_at, kind)`` pairs to send now, oldest first (``kind`` is
    ``scheduled`` or ``catchup``); ``skipped``: what is not sent; ``following``: the task's
    next occurrence after this decision (``None``: no more, e.g. a one-off that ran).
    """

    sends: tuple[tuple[datetime, str], ...]
    following: datetime | None
    skipped: tuple[Skipped, ...] = field(default=())


def _following(schedule: BaseSchedule, last_sent: datetime | None, now: datetime,
               anchor_on_now: bool) -> datetime | None:
    """The next occurrence after ``now``.

    After a catch-up of one run, intervals re-anchor on the send time, as Celery does (the
    next run is a whole interval after the catch-up run, not the next grid point, which could
    follow at once).  After ``all``, they stay on their grid.
    """
    if anchor_on_now or last_sent is None:
        return schedule.next_after(now, now)
    return schedule.next_after(now, last_sent)


def plan_due(schedule: BaseSchedule, scheduled: datetime, now: datetime, *, catchup: str = "once",
             catchup_limit: int = 100, grace: float = DEFAULT_GRACE,
             starting_deadline: float | None = None,
             delay: Callable[[datetime], float] | None = None) -> DuePlan:
    """Decide a due task: ``scheduled`` (its next occurrence, <= ``now``) and what follows.

    An occurrence is *missed* when the next one is due too, or when it is more than ``grace``
    seconds late (beat was down, paused, or could not send).  Then ``catchup`` decides:

    - ``once`` (Celery's behaviour): one run, for the first missed occurrence, and the
      schedule continues after ``now``;
    - ``skip``: nothing is sent; the missed occurrences are recorded as skipped;
    - ``all``: every missed occurrence, oldest first, up to ``catchup_limit``; the rest are
      skipped.

    ``starting_deadline`` (Celery's ``beat_cron_starting_deadline``, for cron schedules):
    occurrences older than that many seconds are skipped whatever ``catchup`` says.
    ``delay(occurrence)`` is the occurrence's jitter in seconds (lateness counts from the
    jittered time).
    """
    jitter = delay or (lambda _o: 0.0)
    skipped: list[Skipped] = []
    if starting_deadline is not None:
        horizon = now - timedelta(seconds=starting_deadline)
        if scheduled < horizon:
            first_in = schedule.next_after(horizon - timedelta(microseconds=1), None)
            skipped.append(Skipped(scheduled, 1, "older than beat_cron_starting_deadline "
                                   f"({starting_deadline:g} s)"))
            if first_in is None or first_in > now:
                return DuePlan((), _following(schedule, None, now, True), tuple(skipped))
            scheduled = first_in
    nxt = schedule.next_after(scheduled, scheduled)
    more = nxt is not None and nxt + timedelta(seconds=jitter(nxt)) <= now
    late = (now - scheduled).total_seconds() - jitter(scheduled) > grace
    if not more and not late:
        return DuePlan(((scheduled, SCHEDULED),), nxt, tuple(skipped))
    if catchup == "skip":
        skipped.append(Skipped(scheduled, 2 if more else 1, "missed (catchup='skip')"))
        return DuePlan((), _following(schedule, None, now, True), tuple(skipped))
    if catchup == "all":
        sends: list[tuple[datetime, str]] = []
        limit = min(catchup_limit, MAX_CATCHUP)
        current: datetime | None = scheduled
        while current is not None and current <= now and len(sends) < limit:
            sends.append((current, CATCHUP))
            current = schedule.next_after(current, current)
        if current is not None and current <= now:
            skipped.append(Skipped(current, 1, f"missed beyond catchup_limit ({limit})"))
            return DuePlan(tuple(sends), _following(schedule, None, now, True), tuple(skipped))
        return DuePlan(tuple(sends), _following(schedule, sends[-1][0], now, False),
                       tuple(skipped))
    return DuePlan(((scheduled, CATCHUP),), _following(schedule, None, now, True),
                   tuple(skipped))
