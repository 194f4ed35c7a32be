"""The schedule protocol shared by every schedule kind.

Schedules are immutable values: pure computation on aware datetimes, no I/O, no Celery.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from ..errors import InvalidSchedule

UTC = timezone.utc

#: The shortest interval :class:`every` accepts, in seconds: beat's loop cannot keep a
#: shorter one, and below a microsecond the interval would round to nothing.
MIN_INTERVAL = 0.1

#: Registry of schedule kinds by their ``type`` tag, filled by :func:`register_kind`.
KINDS: dict[str, type[BaseSchedule]] = {}


def register_kind(cls: type[BaseSchedule]) -> type[BaseSchedule]:
    """Class decorator: make ``cls`` loadable by :func:`schedule_from_dict`."""
    KINDS[cls.type] = cls
    return cls


def require_aware(value: datetime, field: str) -> datetime:
    """Return ``value`` converted to UTC, or raise :class:`InvalidSchedule` if it is naive."""
    if not isinstance(value, datetime):
        raise InvalidSchedule(f"{field} {value!r} is not a datetime", field)
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidSchedule(f"{field} {value.isoformat()!r} is a naive datetime", field)
    return value.astimezone(UTC)


class BaseSchedule:
    """Base of every schedule kind.

    Subclasses implement :meth:`next_after`, :meth:`to_dict` and ``from_dict``; equality and
    hashing follow the JSON form, so two schedules that serialise alike are equal.
    """

    #: Tag stored in the ``type`` key of :meth:`to_dict`.
    type: ClassVar[str] = ""

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """Return the first fire time strictly after ``after`` (aware UTC), or ``None``.

        :param after: aware datetime; the result is strictly later.
        :param last_run_at: when the task last ran, for kinds anchored on it (intervals).
        """
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`InvalidSchedule` if this schedule cannot run in this process.

        Construction validates values; this checks what only the running process knows (a
        custom schedule's function must be registered here).  The default does nothing.
        """

    def initial_run_at(self, now: datetime) -> datetime | None:
        """The first fire time of a task created (or changed) at ``now``, or ``None``.

        By default the first fire time strictly after ``now``; kinds that can be due at
        creation (a :class:`once` in the past) override it.

        :param now: aware datetime, the moment the task is created or changed.
        """
        return self.next_after(require_aware(now, "now"), None)

    def is_due(
        self, last_run_at: datetime | None, now: datetime | None = None
    ) -> tuple[bool, float]:
        """Celery-compatible ``(is_due, seconds_to_next)``.

        :param last_run_at: when the task last ran (``None``: never).
        :param now: the current time (default: the real clock).
        """
        now = require_aware(now, "now") if now is not None else datetime.now(UTC)
        anchor = require_aware(last_run_at, "last_run_at") if last_run_at else None
        due_at = self.next_after(anchor, anchor) if anchor else self.next_after(now, None)
        if due_at is None:
            return False, float("inf")
        if due_at <= now:
            following = self.next_after(now, now)
            wait = (following - now).total_seconds() if following else float("inf")
            return True, wait
        return False, (due_at - now).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """Return the lossless JSON-able form, with a ``type`` key."""
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BaseSchedule:
        """Rebuild a schedule of this kind from :meth:`to_dict` output."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseSchedule):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        import json

        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{self.type}({fields})"


def schedule_from_dict(data: dict[str, Any]) -> BaseSchedule:
    """Rebuild any schedule from its :meth:`BaseSchedule.to_dict` form.

    :raises InvalidSchedule: unknown ``type`` or invalid fields.
    """
    if not isinstance(data, dict):
        raise InvalidSchedule(f"schedule {data!r} is not a mapping", "schedule")
    kind = data.get("type")
    cls = KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise InvalidSchedule(f"schedule type {kind!r} is unknown", "type")
    return cls.from_dict(data)


@functools.lru_cache(maxsize=4096)
def schedule_from_json(text: str) -> BaseSchedule:
    """:func:`schedule_from_dict` of a schedule's JSON text (its ``to_dict()`` form, keys
    sorted), parsed once per distinct text: schedules are immutable, so the admin's bulk
    calls and beat's start-up share one object among equal schedules.

    :raises InvalidSchedule: as :func:`schedule_from_dict` (a failure is not remembered).
    """
    return schedule_from_dict(json.loads(text))


@register_kind
class every(BaseSchedule):  # noqa: N801 - lowercase like celery's ``schedule``/``crontab``
    """Fixed interval: fires every ``seconds + minutes + hours + days``.

    The interval is anchored on the last run: after a run at ``t`` the next is ``t +
    interval``; missed occurrences collapse into one (Celery's behaviour).

    With ``anchor`` (an aware datetime) the schedule fires on the fixed grid ``anchor + k *
    interval`` whatever the last run: ``every(hours=1, anchor=midnight)`` fires on the hour,
    and ``any_of`` of anchored intervals fires on each member's grid.

    >>> every(minutes=5).interval
    datetime.timedelta(seconds=300)
    """

    type = "interval"

    def __init__(
        self, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0,
        anchor: datetime | str | None = None,
    ) -> None:
        for field, value in (("seconds", seconds), ("minutes", minutes), ("hours", hours),
                             ("days", days)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidSchedule(f"{field} {value!r} is not a number", field)
            if not math.isfinite(value):
                raise InvalidSchedule(f"{field} {value!r} is not finite", field)
            if value < 0:
                raise InvalidSchedule(f"{field} {value!r} is negative", field)
        total = seconds + minutes * 60 + hours * 3600 + days * 86400
        if total <= 0:
            raise InvalidSchedule(f"interval {total!r}s is not positive", "interval")
        if total < MIN_INTERVAL:
            raise InvalidSchedule(f"interval {total!r}s is shorter than the minimum "
                                  f"{MIN_INTERVAL:g}s", "interval")
        if total > timedelta.max.total_seconds() / 2:
            raise InvalidSchedule(f"interval {total!r}s is too long", "interval")
        self.seconds = float(total)
        if isinstance(anchor, str):
            try:
                anchor = datetime.fromisoformat(anchor)
            except ValueError:
                raise InvalidSchedule(f"anchor {anchor!r} is not an ISO datetime",
                                      "anchor") from None
        self.anchor = require_aware(anchor, "anchor") if anchor is not None else None

    @property
    def interval(self) -> timedelta:
        """The interval as a :class:`~datetime.timedelta`."""
        return timedelta(seconds=self.seconds)

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        after = require_aware(after, "after")
        step = self.interval
        if self.anchor is not None:
            anchor = self.anchor
            if anchor > after:
                return anchor
        elif last_run_at is None:
            return after + step
        else:
            anchor = require_aware(last_run_at, "last_run_at")
        candidate = anchor + step
        if candidate > after:
            return candidate
        missed = int((after - anchor) / step)
        candidate = anchor + step * missed
        while candidate <= after:
            candidate += step
        return candidate

    def to_dict(self) -> dict[str, Any]:
        seconds: float | int = int(self.seconds) if self.seconds.is_integer() else self.seconds
        out: dict[str, Any] = {"type": self.type, "seconds": seconds}
        if self.anchor is not None:
            out["anchor"] = self.anchor.isoformat()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> every:
        return cls(seconds=data.get("seconds", 0), anchor=data.get("anchor"))
