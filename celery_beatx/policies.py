"""Pure decisions of the send path: which occurrences of a due task are sent, which are
skipped (and why), and when the task is next due.

No database, no Celery: the scheduler gathers the inputs (the task's definition and state,
and ``now``) and carries out the answer.  Everything here is a plain function of its
arguments and is tested without a database.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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


# -- retries -----------------------------------------------------------------------------

RETRY_STRATEGIES = ("exponential", "fixed")
#: Upper bounds that keep a retry policy meaningful (and its numbers storable).
MAX_RETRIES = 1000
MAX_RETRY_DELAY = 30 * 86400.0


def _retry_number(data: Mapping[str, Any], key: str, default: float | None, *,
                  minimum: float, strict: bool = False) -> float | None:
    from .errors import InvalidSchedule

    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value > MAX_RETRY_DELAY:
        raise InvalidSchedule(f"retry.{key} {value!r} must be a number of seconds "
                              f"<= {MAX_RETRY_DELAY:g}", f"retry.{key}")
    if value < minimum or (strict and value <= minimum):
        raise InvalidSchedule(f"retry.{key} {value!r} must be {'>' if strict else '>='} "
                              f"{minimum:g}", f"retry.{key}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How beat re-sends a run that failed (reported by the worker hook) or whose publish
    failed: up to ``max_retries`` more attempts, the n-th after ``delay`` seconds
    (``strategy="fixed"``) or ``delay * factor ** (n - 1)`` (``"exponential"``), never more
    than ``max_delay``.  Each attempt has its own deterministic task id and carries its
    number in the ``beatx_run`` header.

    :raises InvalidSchedule: an unknown key or a bad value, naming the field.
    """

    max_retries: int = 3
    strategy: str = "exponential"
    delay: float = 10.0
    max_delay: float | None = 3600.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        # Validate through the dict form so that every way of building one is checked.
        RetryPolicy.from_dict(self.to_dict())

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1 is the first retry)."""
        if self.strategy == "fixed":
            seconds = self.delay
        else:
            seconds = self.delay * self.factor ** max(attempt - 1, 0)
        return min(seconds, self.max_delay) if self.max_delay is not None else seconds

    def to_dict(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "strategy": self.strategy,
                "delay": self.delay, "max_delay": self.max_delay, "factor": self.factor}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Build (and validate) a policy from its dict form; unknown keys are refused."""
        from .errors import InvalidSchedule

        if not isinstance(data, Mapping):
            raise InvalidSchedule(f"retry {data!r} is not a RetryPolicy or a mapping", "retry")
        unknown = sorted(set(data) - {"max_retries", "strategy", "delay", "max_delay",
                                      "factor"})
        if unknown:
            raise InvalidSchedule(f"retry: unknown key {unknown[0]!r} (known: max_retries, "
                                  "strategy, delay, max_delay, factor)", f"retry.{unknown[0]}")
        retries = data.get("max_retries", 3)
        if isinstance(retries, bool) or not isinstance(retries, int) \
                or not 0 <= retries <= MAX_RETRIES:
            raise InvalidSchedule(f"retry.max_retries {retries!r} must be an integer "
                                  f"0-{MAX_RETRIES}", "retry.max_retries")
        strategy = data.get("strategy", "exponential")
        if strategy not in RETRY_STRATEGIES:
            raise InvalidSchedule(f"retry.strategy {strategy!r} is not one of "
                                  f"{RETRY_STRATEGIES}", "retry.strategy")
        delay = _retry_number(data, "delay", 10.0, minimum=0.0)
        max_delay = _retry_number(data, "max_delay", 3600.0, minimum=0.0, strict=True)
        factor = _retry_number(data, "factor", 2.0, minimum=1.0)
        assert delay is not None and factor is not None
        if max_delay is not None and max_delay < delay:
            raise InvalidSchedule(f"retry.max_delay {max_delay:g} is less than retry.delay "
                                  f"{delay:g}", "retry.max_delay")
        policy = object.__new__(cls)
        for key, value in (("max_retries", retries), ("strategy", strategy), ("delay", delay),
                           ("max_delay", max_delay), ("factor", factor)):
            object.__setattr__(policy, key, value)
        return policy

    @classmethod
    def coerce(cls, value: Any) -> RetryPolicy:
        """A :class:`RetryPolicy` from one, or from its dict form."""
        return value if isinstance(value, RetryPolicy) else cls.from_dict(value)


def next_attempt(policy: RetryPolicy | None, attempt: int, failed_at: datetime
                 ) -> tuple[int, datetime] | None:
    """The retry after a failure of attempt ``attempt`` (0 is the first send): its number
    and when it is due, or None when there is no policy or its retries are used up."""
    if policy is None or attempt >= policy.max_retries:
        return None
    following = attempt + 1
    return following, failed_at + timedelta(seconds=policy.delay_for(following))


# -- gating: dependencies and overlap --------------------------------------------------------

SEND, SKIP, BLOCK, BUFFER = "send", "skip", "block", "buffer"


@dataclass(frozen=True)
class Upstream:
    """What a task's dependency has done: its latest finished run's status and end."""

    status: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Gate:
    """The verdict on a due occurrence: ``send``, ``skip`` (recorded with ``reason``),
    ``block`` (wait: a dependency has not succeeded yet) or ``buffer`` (send when the
    running run finishes)."""

    action: str
    reason: str = ""


def gate(*, scheduled: datetime, following: datetime | None, now: datetime,
         depends_on: Sequence[str] = (), upstream: Mapping[str, Upstream] | None = None,
         previous_sent_at: datetime | None = None, overlap: str = "allow", running: int = 0,
         buffered: bool = False) -> Gate:
    """Whether the due occurrence ``scheduled`` of a task may be sent now.

    Dependencies first: it is sent only if each dependency's latest finished run succeeded
    after this task's previous run was sent (any time, if it never ran); otherwise it waits
    (``block``) until that holds, or until one period has passed (``following`` is due),
    when the occurrence is skipped.  Then overlap: ``skip`` does not send while a run of the
    task is still running; ``buffer_one`` keeps one occurrence to send when it finishes
    (while one is kept, ``buffered``, later occurrences are skipped, finished or not: the
    kept one is released first).
    """
    upstream = upstream or {}
    waiting = []
    for name in depends_on:
        state = upstream.get(name, Upstream())
        if state.status != "succeeded" or state.finished_at is None or (
                previous_sent_at is not None and state.finished_at <= previous_sent_at):
            waiting.append(name)
    if waiting:
        what = ", ".join(repr(n) for n in waiting)
        if following is not None and following <= now:
            return Gate(SKIP, f"dependency {what} did not succeed within one period")
        return Gate(BLOCK, f"waiting for dependency {what} to succeed")
    if running and overlap == "skip":
        return Gate(SKIP, "overlap='skip': the previous run has not finished")
    if overlap == "buffer_one" and buffered:
        # The waiting run goes first, even when the previous run has just finished and it
        # was not released yet: sending this occurrence now would overtake it (and then
        # run alongside it once it is released).
        return Gate(SKIP, "overlap='buffer_one': a run is already waiting")
    if running and overlap == "buffer_one":
        return Gate(BUFFER, "overlap='buffer_one': sent when the previous run finishes")
    return Gate(SEND)
