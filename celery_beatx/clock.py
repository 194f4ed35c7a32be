"""The one place that reads the real time (everything else takes ``now`` or a clock)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

UTC = timezone.utc

#: A clock returns the current time as an aware datetime.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, aware UTC."""
    return datetime.now(UTC)
