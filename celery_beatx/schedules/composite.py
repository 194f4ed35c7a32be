"""Composite schedules: :class:`any_of` (OR) and :class:`all_of` (AND) of other schedules.

The seed's ``CompositeSchedule::or`` / ``CompositeSchedule::and``. Members may be any
schedule, composites included.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from ..errors import InvalidSchedule
from .base import BaseSchedule, register_kind, require_aware, schedule_from_dict

__all__ = ["MAX_ITERATIONS", "SEARCH_HORIZON", "all_of", "any_of"]

#: :class:`all_of` gives up (``None``) after this many refinement steps...
MAX_ITERATIONS = 10_000
#: ...or when the candidate is further than this from ``after``.
SEARCH_HORIZON = timedelta(days=5 * 366)

_TICK = timedelta(microseconds=1)


def _members(kind: str, schedules: tuple[Any, ...]) -> tuple[BaseSchedule, ...]:
    if len(schedules) == 1 and isinstance(schedules[0], (list, tuple)):
        schedules = tuple(schedules[0])
    if not schedules:
        raise InvalidSchedule(f"{kind} needs at least one schedule", "schedules")
    for index, member in enumerate(schedules):
        if not isinstance(member, BaseSchedule):
            raise InvalidSchedule(
                f"schedules[{index}] {member!r} of {kind} is not a schedule", "schedules")
    return tuple(schedules)


def _members_from_dict(kind: str, data: dict[str, Any]) -> list[BaseSchedule]:
    items = data.get("schedules")
    if not isinstance(items, list):
        raise InvalidSchedule(f"schedules {items!r} of {kind} is not a list", "schedules")
    return [item if isinstance(item, BaseSchedule) else schedule_from_dict(item)
            for item in items]


def fires_at(schedule: BaseSchedule, when: datetime,
             last_run_at: datetime | None = None) -> bool:
    """Whether ``schedule`` fires exactly at ``when`` (microsecond resolution)."""
    return schedule.next_after(when - _TICK, last_run_at) == when


class _Composite(BaseSchedule):
    """Common machinery of :class:`any_of` and :class:`all_of`."""

    _schedules: tuple[BaseSchedule, ...]

    def __init__(self, *schedules: BaseSchedule | Iterable[BaseSchedule]) -> None:
        self._schedules = _members(self.type, schedules)

    @property
    def schedules(self) -> tuple[BaseSchedule, ...]:
        """The member schedules, in order."""
        return self._schedules

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} is immutable")
        super().__setattr__(name, value)

    def check(self) -> None:
        """Check every member (see :meth:`BaseSchedule.check`)."""
        for member in self._schedules:
            member.check()

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form: the members' own forms, in order."""
        return {"type": self.type, "schedules": [m.to_dict() for m in self._schedules]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _Composite:
        """Rebuild from :meth:`to_dict` output (members through :func:`schedule_from_dict`)."""
        return cls(*_members_from_dict(cls.type, data))


@register_kind
class any_of(_Composite):  # noqa: N801 - lowercase like the other schedule kinds
    """Fires whenever any member fires: the next fire time is the earliest of the members'.

    ``last_run_at`` (the composite task's last run) is passed to every member unchanged, so
    interval members are all anchored on the last run of the composite.
    ``None`` when no member fires again.

    :param schedules: one or more schedules (or a single list of them).
    :raises InvalidSchedule: no member, or a member that is not a schedule.

    >>> from celery_beatx.schedules import every
    >>> any_of(every(minutes=1), every(minutes=2)).to_dict()["type"]
    'any_of'
    """

    type = "any_of"

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """The earliest of the members' next fire times after ``after``, or ``None``."""
        after = require_aware(after, "after")
        found = [t for m in self._schedules
                 if (t := m.next_after(after, last_run_at)) is not None]
        return min(found) if found else None

    def initial_run_at(self, now: datetime) -> datetime | None:
        """The earliest of the members' initial run times (a late :class:`once` counts)."""
        found = [t for m in self._schedules if (t := m.initial_run_at(now)) is not None]
        return min(found) if found else None


@register_kind
class all_of(_Composite):  # noqa: N801 - lowercase like the other schedule kinds
    """Fires at the instants at which *every* member fires.

    A member *fires at* ``t`` when its first fire time after ``t - 1µs`` is ``t``. The search
    iterates to a fixed point: the candidate starts at the latest of the members' next fire
    times; while some member does not fire at the candidate, the candidate moves to the
    latest of the members' first fire times at or after it. Every common fire time is at or
    after each candidate, so the first fixed point is the answer.
    The search is bounded: ``None`` after :data:`MAX_ITERATIONS` steps or past
    :data:`SEARCH_HORIZON` from ``after`` (members that never coincide, e.g. ``*/7`` and an
    interval with a seconds offset), or when a member never fires again.

    With no ``last_run_at`` the members are anchored on ``after`` (as if the task had just
    run), so interval members share one origin and ``all_of(every(60), every(90))`` fires
    every 180 seconds.

    :param schedules: one or more schedules (or a single list of them).
    :raises InvalidSchedule: no member, or a member that is not a schedule.
    """

    type = "all_of"

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """The first instant strictly after ``after`` at which every member fires, or ``None``."""
        after = require_aware(after, "after")
        anchor = require_aware(last_run_at, "last_run_at") if last_run_at is not None else after
        try:
            limit = after + SEARCH_HORIZON
        except OverflowError:
            limit = datetime.max.replace(tzinfo=after.tzinfo)
        members = self._schedules
        nexts = [m.next_after(after, anchor) for m in members]
        for _ in range(MAX_ITERATIONS):
            if any(t is None for t in nexts):
                return None
            candidate: datetime = max(nexts)  # type: ignore[type-var]
            if candidate > limit:
                return None
            probe = candidate - _TICK
            nexts = [m.next_after(probe, anchor) for m in members]
            if all(t == candidate for t in nexts):
                return candidate
        return None
