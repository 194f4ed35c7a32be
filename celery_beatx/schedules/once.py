"""One-off schedules: :class:`once` fires a single time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import InvalidSchedule
from .base import UTC, BaseSchedule, register_kind, require_aware

__all__ = ["CLEANUPS", "once", "parse_instant"]

#: What happens to a task after its :class:`once` has run.
CLEANUPS = ("disable", "delete")


def parse_instant(value: Any, field: str) -> datetime:
    """An aware datetime (or an ISO 8601 string with an offset) converted to UTC.

    :raises InvalidSchedule: not a datetime / ISO string, or naive; the error names ``field``.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidSchedule(
                f"{field} {value!r} is not an ISO 8601 datetime", field) from None
    return require_aware(value, field)


@register_kind
class once(BaseSchedule):  # noqa: N801 - lowercase like the other schedule kinds
    """Fires exactly once, at ``at``.

    * Before its run, :meth:`next_after` returns ``at`` while ``at`` is still ahead.
    * A ``last_run_at`` at or after ``at`` means the one run happened: :meth:`next_after`
      returns ``None`` from then on (an earlier ``last_run_at``, left by a previous schedule
      of the same task, is ignored).
    * A ``once`` whose ``at`` is already past when the task is created or changed runs at the
      next tick: :meth:`initial_run_at` returns ``now`` and :meth:`is_due` with no last run
      says it is due.
    * After the run the task is disabled (``cleanup="disable"``, the default) or deleted
      (``cleanup="delete"``); the scheduler does that when :meth:`next_after` returns
      ``None``, reading :attr:`cleanup`.

    :param at: aware datetime (or ISO 8601 string with an offset).
    :param cleanup: ``"disable"`` or ``"delete"``.
    :raises InvalidSchedule: ``at`` naive or not a datetime, or an unknown ``cleanup``.

    >>> from datetime import datetime, timezone
    >>> once(datetime(2030, 1, 1, tzinfo=timezone.utc)).to_dict()["at"]
    '2030-01-01T00:00:00+00:00'
    """

    type = "once"

    def __init__(self, at: datetime | str, cleanup: str = "disable") -> None:
        self._at = parse_instant(at, "at")
        if not isinstance(cleanup, str) or cleanup not in CLEANUPS:
            raise InvalidSchedule(
                f"cleanup {cleanup!r} is unknown (expected 'disable' or 'delete')", "cleanup")
        self._cleanup = cleanup

    at = property(lambda self: self._at, doc="The fire time (aware UTC).")
    cleanup = property(lambda self: self._cleanup,
                       doc="``'disable'`` or ``'delete'``: what to do with the task after its run.")

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            raise AttributeError("once is immutable")
        super().__setattr__(name, value)

    def has_run(self, last_run_at: datetime | None) -> bool:
        """Whether ``last_run_at`` shows that the one run happened (it is at or after ``at``)."""
        if last_run_at is None:
            return False
        return require_aware(last_run_at, "last_run_at") >= self._at

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """``at`` if it is strictly after ``after`` and the task has not run yet, else ``None``."""
        after = require_aware(after, "after")
        if self.has_run(last_run_at):
            return None
        return self._at if self._at > after else None

    def initial_run_at(self, now: datetime) -> datetime | None:
        """``at``, or ``now`` when ``at`` is already past: a late one-off runs at the next tick."""
        now = require_aware(now, "now")
        return self._at if self._at > now else now

    def is_due(
        self, last_run_at: datetime | None, now: datetime | None = None
    ) -> tuple[bool, float]:
        """Due once ``at`` is reached (or at once, when created late) and never again."""
        now = require_aware(now, "now") if now is not None else datetime.now(UTC)
        if self.has_run(last_run_at):
            return False, float("inf")
        if self._at <= now:
            return True, float("inf")
        return False, (self._at - now).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """The lossless JSON form (``at`` as an ISO 8601 UTC string)."""
        return {"type": self.type, "at": self._at.isoformat(), "cleanup": self._cleanup}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> once:
        """Rebuild from :meth:`to_dict` output."""
        return cls(data.get("at"), data.get("cleanup", "disable"))  # type: ignore[arg-type]
