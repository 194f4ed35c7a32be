"""Exceptions raised by celery-beatx.

Every error is a subclass of :class:`BeatxError`, so callers can catch them all at once.
"""

from __future__ import annotations


class BeatxError(Exception):
    """Base class of every celery-beatx error."""


class InvalidSchedule(BeatxError, ValueError):
    """A schedule (or a task definition) has a field with an invalid value.

    The message names the field and the value, e.g.
    ``day_of_week '8' is out of range 0-6``.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TaskNotFound(BeatxError, LookupError):
    """No task with that name exists."""


class TaskExists(BeatxError):
    """A task with that name exists already."""


class DependencyCycle(BeatxError):
    """Adding or changing a dependency would create a cycle."""


class VersionNotFound(BeatxError, LookupError):
    """The task has no version with that number."""


class LockNotHeld(BeatxError):
    """The lock is not held by the caller."""


class SchemaOutOfDate(BeatxError):
    """The database schema is older than this release and auto-migration is off."""


class WriteConflict(BeatxError):
    """Other writers kept colliding with this call (deadlocks, serialization failures) or
    held the rows it needed for longer than the database waits; nothing was written.

    The call already ran its transaction again a few times before raising this; it is safe
    to call it again.
    """
