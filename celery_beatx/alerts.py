"""Alerts: stored in ``beatx_alerts`` and handed to handlers registered with :func:`on_alert`.

Webhook delivery and the failure-rate rules of ``AlertConfig`` build on this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

logger = logging.getLogger("celery_beatx.alerts")

LEVELS = ("info", "warning", "critical")
#: The same (kind, task) alert is not raised again within this time.
DEFAULT_COOLDOWN = timedelta(minutes=10)


@dataclass(frozen=True)
class Alert:
    """One alert: ``level`` is ``info``, ``warning`` or ``critical``."""

    level: str
    kind: str
    task_name: str | None
    message: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


AlertHandler = Callable[[Alert], None]
_handlers: list[AlertHandler] = []


def on_alert(fn: AlertHandler) -> AlertHandler:
    """Register ``fn(alert)`` to be called for every alert raised in this process.

    Usable as a decorator.  A handler that raises is logged and never stops beat.
    """
    _handlers.append(fn)
    return fn


def remove_handler(fn: AlertHandler) -> None:
    """Unregister a handler added with :func:`on_alert`."""
    if fn in _handlers:
        _handlers.remove(fn)


def dispatch(alert: Alert) -> None:
    """Hand ``alert`` to every registered handler."""
    for handler in list(_handlers):
        try:
            handler(alert)
        except Exception:
            logger.exception("alert handler %r failed", handler)


class AlertCooldown:
    """Remembers when each (kind, task) last alerted, to drop repeats within ``cooldown``."""

    def __init__(self, cooldown: timedelta = DEFAULT_COOLDOWN) -> None:
        self.cooldown = cooldown
        self._last: dict[tuple[str, str | None], datetime] = {}

    def admit(self, alert: Alert) -> bool:
        """True when ``alert`` is not a repeat within the cooldown (and remember it)."""
        key = (alert.kind, alert.task_name)
        last = self._last.get(key)
        if last is not None and alert.at - last < self.cooldown:
            return False
        self._last[key] = alert.at
        return True
