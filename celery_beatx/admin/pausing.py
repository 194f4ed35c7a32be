"""Pausing and resuming tasks, with the reason, who and when kept.

A pause is not a definition change (no new version) and is separate from ``enabled``.  It
moves the task's change revision, so a running beat drops the task within
``beatx_sync_interval``; ``resume`` moves it again and beat takes the task back *without*
recomputing its next run: the occurrences missed while paused are then handled by the
task's ``catchup`` policy, as after a beat downtime.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..definitions import TaskInfo
from ..errors import InvalidSchedule
from ..store.models import NAME_LENGTH
from ..store.rows import info_from_row
from ._base import AdminBase

#: The longest pause reason accepted.
REASON_MAX = 2000


class PausingMixin(AdminBase):
    """``pause`` / ``resume`` of :class:`~celery_beatx.BeatAdmin`."""

    def pause(self, name: str, reason: str = "") -> TaskInfo:
        """Hold a task back until :meth:`resume`, keeping why, who and when.

        Who is this admin's ``instance_id`` (``beatx_instance_id`` of its app), else
        ``"admin"``.  Pausing a paused task replaces the three.

        :raises TaskNotFound: no such task.
        :raises InvalidSchedule: ``reason`` is not a string, is too long or holds a NUL.
        """
        if not isinstance(reason, str):
            raise InvalidSchedule(f"reason {reason!r} must be a string", "reason")
        if len(reason) > REASON_MAX:
            raise InvalidSchedule(f"reason {reason[:40]!r}... is longer than {REASON_MAX} "
                                  "characters", "reason")
        if "\x00" in reason:
            raise InvalidSchedule(f"reason {reason!r} contains a NUL character", "reason")
        now = self._now()
        who = (self.instance_id or "admin")[:NAME_LENGTH]

        def body(session: Session) -> TaskInfo:
            row = self._row(session, name, for_update=True)
            row.paused_reason, row.paused_by, row.paused_at = reason, who, now
            row.revision = self.repo.next_revision(session)
            row.updated_at = now
            return info_from_row(row)

        return self._write(body)

    def resume(self, name: str) -> TaskInfo:
        """Let beat send a paused task again (a task that is not paused is left as it is).

        The next run time is kept: occurrences missed while paused go to the task's
        ``catchup`` policy (``"once"`` by default: one run for them).

        :raises TaskNotFound: no such task.
        """
        now = self._now()

        def body(session: Session) -> TaskInfo:
            row = self._row(session, name, for_update=True)
            if row.paused_at is None:
                return info_from_row(row)
            row.paused_reason = row.paused_by = row.paused_at = None
            row.revision = self.repo.next_revision(session)
            row.updated_at = now
            return info_from_row(row)

        return self._write(body)
