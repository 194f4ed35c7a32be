"""The stored description of a task driven by a Celery schedule object held in beat's memory.

Some ``beat_schedule`` entries (and entries added through Celery's runtime API) cannot be
turned into one of our schedules without changing when they fire: an instance of a user
subclass of ``celery.schedules.schedule`` or ``BaseSchedule``, a Celery schedule with a
``nowfun`` of its own, a ``relative=True`` interval, an entry whose arguments hold a
``BeatLazyFunc``.  Beat drives those with the object's own ``is_due()``, exactly as Celery
does, and the database keeps only this description (class, ``repr`` and why it is held in
memory), so that ``list``, ``get`` and exports show what the task is.

A process that does not hold the object (an admin process on the database URL, a beat whose
configuration lacks the entry) cannot compute fire times for it: :meth:`check` and
:meth:`next_after` raise :class:`InvalidSchedule` with the reason, and beat marks such a task
invalid instead of crashing.  Pure: no Celery import.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from ..errors import InvalidSchedule
from .base import BaseSchedule, register_kind

__all__ = ["MEMORY_GUARDED_FIELDS", "celery_schedule", "in_memory_refusal", "is_in_memory"]

#: Definition fields that come from the in-memory Celery entry (changing them through the
#: admin API would be stored and ignored, so it is refused).
MEMORY_GUARDED_FIELDS = ("task", "schedule", "args", "kwargs", "queue", "priority", "expires",
                         "headers", "options", "calendar", "jitter", "catchup",
                         "catchup_limit")

_TEXT_MAX = 500


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidSchedule(f"{field} {value!r} must be a non-empty string", field)
    return value[:_TEXT_MAX]


@register_kind
class celery_schedule(BaseSchedule):  # noqa: N801 - lowercase like the other schedule kinds
    """A Celery schedule object held in beat's memory (see the module docstring).

    :param cls: the object's class, ``module.QualName``.
    :param text: its ``repr()``.
    :param reason: why beat drives it in memory rather than converting it.
    """

    type = "celery"
    #: Fire times are computed by the object itself, in the beat that holds it.
    in_memory: ClassVar[bool] = True

    def __init__(self, cls: str, text: str, reason: str) -> None:
        self.cls = _text(cls, "class")
        self.text = _text(text, "repr")
        self.reason = _text(reason, "reason")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:
            raise AttributeError("celery_schedule is immutable")
        super().__setattr__(name, value)

    def _problem(self) -> str:
        return (f"schedule is a Celery {self.cls} object ({self.reason}) driven in the memory "
                "of the beat whose configuration defines it; this process does not hold it")

    def check(self) -> None:
        """:raises InvalidSchedule: always (a beat holding the object never asks)."""
        raise InvalidSchedule(self._problem(), "schedule")

    def next_after(self, after: datetime, last_run_at: datetime | None = None) -> datetime | None:
        """:raises InvalidSchedule: only the object itself knows its fire times."""
        raise InvalidSchedule(self._problem(), "schedule")

    def initial_run_at(self, now: datetime) -> datetime | None:
        """``None``: the beat holding the object asks it at once."""
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "class": self.cls, "repr": self.text, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> celery_schedule:
        return cls(data.get("class"), data.get("repr"), data.get("reason"))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"celery_schedule({self.cls}: {self.text})"


def is_in_memory(stored: Any) -> bool:
    """Whether a stored schedule (a row's JSON) describes an in-memory Celery schedule."""
    return isinstance(stored, Mapping) and stored.get("type") == celery_schedule.type


def in_memory_refusal(fields: Mapping[str, Any]) -> str | None:
    """Why a definition whose schedule is held in memory cannot have these policy values.

    Celery's ``is_due()`` decides when such a task runs, so a calendar, a jitter or a
    catch-up other than Celery's (``once``) would be stored and never applied.
    """
    if fields.get("calendar"):
        return "calendar"
    if fields.get("jitter"):
        return "jitter"
    if fields.get("catchup", "once") != "once":
        return "catchup"
    return None
