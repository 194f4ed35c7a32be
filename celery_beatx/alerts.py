"""Alerts: what they are, the rules a task asks for (:class:`AlertConfig`), handlers
registered with :func:`on_alert`, and the webhook settings.

Pure: no database, no Celery, no network (the rules run in
:mod:`celery_beatx.beat.alerting`, webhooks are posted by :mod:`celery_beatx.webhooks`).

Kinds and their levels:

====================  ========  ==============================================================
kind                  level     raised when
====================  ========  ==============================================================
consecutive_failures  critical  the task's newest ``consecutive_failures`` outcomes all failed
failure_rate          warning   at least ``failure_rate`` of its last ``window`` outcomes failed
slow_execution        warning   a run took longer than ``slow_seconds``
missed_schedule       warning   an occurrence was sent late by catch-up or skipped as missed
stuck_task            warning   a run was marked ``stuck`` (sent or started, not finished)
invalid_schedule      critical  beat cannot schedule the task (it is skipped)
send_failed           warning   publishing a run failed with an error that is not an outage
leader_lost           warning   a beat lost the leader lease (another takes over)
resolved              info      a success (or a recovery) ended open alerts of the task
====================  ========  ==============================================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidSchedule

logger = logging.getLogger("celery_beatx.alerts")

LEVELS = ("info", "warning", "critical")
#: The same (kind, task) alert is not raised again within this time.
DEFAULT_COOLDOWN = timedelta(minutes=10)

CONSECUTIVE_FAILURES = "consecutive_failures"
FAILURE_RATE = "failure_rate"
SLOW_EXECUTION = "slow_execution"
MISSED_SCHEDULE = "missed_schedule"
STUCK_TASK = "stuck_task"
INVALID_SCHEDULE = "invalid_schedule"
SEND_FAILED = "send_failed"
LEADER_LOST = "leader_lost"
RESOLVED = "resolved"

#: The level each kind is raised at.
KIND_LEVELS: dict[str, str] = {
    CONSECUTIVE_FAILURES: "critical",
    FAILURE_RATE: "warning",
    SLOW_EXECUTION: "warning",
    MISSED_SCHEDULE: "warning",
    STUCK_TASK: "warning",
    INVALID_SCHEDULE: "critical",
    SEND_FAILED: "warning",
    LEADER_LOST: "warning",
    RESOLVED: "info",
}
KINDS = tuple(KIND_LEVELS)
#: Kinds that describe a condition which lasts until something ends it (a success, a fixed
#: definition...): they stay *open* until a ``resolved`` alert closes them.  The others are
#: events.
CONDITION_KINDS = (CONSECUTIVE_FAILURES, FAILURE_RATE, SLOW_EXECUTION, STUCK_TASK,
                   INVALID_SCHEDULE, SEND_FAILED)


def level_rank(level: str) -> int:
    """0 for info, 1 for warning, 2 for critical."""
    return LEVELS.index(level)


@dataclass(frozen=True)
class Alert:
    """One alert: ``level`` is ``info``, ``warning`` or ``critical``.

    ``id`` is its row in ``beatx_alerts`` once stored; ``resolved_at`` is set on a condition
    alert when a later ``resolved`` alert closed it.
    """

    level: str
    kind: str
    task_name: str | None
    message: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    resolved_at: datetime | None = None


# -- AlertConfig -----------------------------------------------------------------------------

ALERT_FIELDS = ("consecutive_failures", "failure_rate", "window", "slow_seconds",
                "missed_schedule", "stuck_seconds")
#: Upper bounds that keep the rules meaningful (and their numbers storable).
MAX_WINDOW = 1000
MAX_ALERT_SECONDS = 30 * 86400.0


def _count(data: Mapping[str, Any], key: str, default: int | None, prefix: str,
           *, optional: bool) -> int | None:
    value = data.get(key, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOW:
        extra = " or None (off)" if optional else ""
        raise InvalidSchedule(f"{prefix}.{key} {value!r} must be an integer from 1 to "
                              f"{MAX_WINDOW}{extra}", f"{prefix}.{key}")
    return value


def _seconds(data: Mapping[str, Any], key: str, prefix: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_ALERT_SECONDS:
        raise InvalidSchedule(f"{prefix}.{key} {value!r} must be a number of seconds > 0 and "
                              f"<= {MAX_ALERT_SECONDS:g}, or None (off)", f"{prefix}.{key}")
    return float(value)


@dataclass(frozen=True)
class AlertConfig:
    """The alert rules of a task (``alerts=`` on ``add``/``update``, or the app's
    ``beatx_default_alerts`` for tasks that have none).

    :param consecutive_failures: raise ``consecutive_failures`` (critical) when this many
        outcomes in a row failed (``None``: off).
    :param failure_rate: raise ``failure_rate`` (warning) when at least this share (0-1] of
        the last ``window`` outcomes failed, once the task has ``window`` outcomes
        (``None``: off).
    :param window: how many of the newest outcomes ``failure_rate`` looks at.
    :param slow_seconds: raise ``slow_execution`` (warning) when a run takes longer
        (``None``: off).
    :param missed_schedule: raise ``missed_schedule`` (warning) when an occurrence is sent
        late by catch-up or skipped as missed.
    :param stuck_seconds: a run sent but not started, or started but not finished, for this
        long is *stuck*: shown by ``health()`` and raised as ``stuck_task`` (``None``: off).
    :raises InvalidSchedule: an unknown key or a bad value, naming the field.
    """

    consecutive_failures: int | None = 3
    failure_rate: float | None = 0.5
    window: int = 20
    slow_seconds: float | None = None
    missed_schedule: bool = True
    stuck_seconds: float | None = None

    def __post_init__(self) -> None:
        # Validate through the dict form so that every way of building one is checked.
        AlertConfig.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form."""
        return {key: getattr(self, key) for key in ALERT_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "alerts") -> AlertConfig:
        """Build (and validate) a config from its dict form; unknown keys are refused.

        ``prefix`` names the field in errors (``alerts`` or ``beatx_default_alerts``).
        """
        if not isinstance(data, Mapping):
            raise InvalidSchedule(f"{prefix} {data!r:.80} is not an AlertConfig or a mapping",
                                  prefix)
        unknown = sorted(str(k) for k in set(data) - set(ALERT_FIELDS))
        if unknown:
            raise InvalidSchedule(f"{prefix}: unknown key {unknown[0]!r} (known: "
                                  f"{', '.join(ALERT_FIELDS)})", f"{prefix}.{unknown[0]}")
        consecutive = _count(data, "consecutive_failures", 3, prefix, optional=True)
        rate = data.get("failure_rate", 0.5)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not math.isfinite(rate) or not 0 < rate <= 1):
            raise InvalidSchedule(f"{prefix}.failure_rate {rate!r} must be a number in (0, 1] "
                                  "or None (off)", f"{prefix}.failure_rate")
        window = _count(data, "window", 20, prefix, optional=False)
        slow = _seconds(data, "slow_seconds", prefix)
        missed = data.get("missed_schedule", True)
        if not isinstance(missed, bool):
            raise InvalidSchedule(f"{prefix}.missed_schedule {missed!r} must be True or False",
                                  f"{prefix}.missed_schedule")
        stuck = _seconds(data, "stuck_seconds", prefix)
        config = object.__new__(cls)
        for key, value in (("consecutive_failures", consecutive),
                           ("failure_rate", None if rate is None else float(rate)),
                           ("window", window), ("slow_seconds", slow),
                           ("missed_schedule", missed), ("stuck_seconds", stuck)):
            object.__setattr__(config, key, value)
        return config

    @classmethod
    def coerce(cls, value: Any, prefix: str = "alerts") -> AlertConfig:
        """An :class:`AlertConfig` from one, or from its dict form."""
        return value if isinstance(value, AlertConfig) else cls.from_dict(value, prefix)


def config_of(stored: Any, default: AlertConfig | None) -> AlertConfig | None:
    """The rules that apply to a task whose stored ``alerts`` field is ``stored``: its own,
    else ``default``; ``None`` when it has none.  A stored value that does not validate
    (hand-edited) counts as none: it was refused at write time, so it cannot have been
    written through the API."""
    if stored is None:
        return default
    try:
        return AlertConfig.coerce(stored)
    except InvalidSchedule:
        return default


# -- handlers ----------------------------------------------------------------------------------

AlertHandler = Callable[[Alert], None]
_handlers: list[AlertHandler] = []
_failed_handlers: set[int] = set()
#: celery-beatx's own receivers (webhook senders, metrics): they get every alert after the
#: handlers and must never block.
_sinks: list[AlertHandler] = []


def on_alert(fn: AlertHandler) -> AlertHandler:
    """Register ``fn(alert)`` to be called for every alert raised in this process.

    Usable as a decorator.  Handlers run in beat's loop, right after the alert is stored:
    keep them quick (hand slow work to a thread or a queue).  A handler that raises is
    logged (with its traceback the first time, at DEBUG after) and never stops beat.
    """
    _handlers.append(fn)
    return fn


def remove_handler(fn: AlertHandler) -> None:
    """Unregister a handler added with :func:`on_alert`."""
    if fn in _handlers:
        _handlers.remove(fn)
    _failed_handlers.discard(id(fn))


def add_sink(fn: AlertHandler) -> None:
    """Register one of celery-beatx's own receivers (a webhook sender, metrics)."""
    _sinks.append(fn)


def remove_sink(fn: AlertHandler) -> None:
    if fn in _sinks:
        _sinks.remove(fn)


def dispatch(alert: Alert) -> None:
    """Hand ``alert`` to every registered handler, then to the webhook senders."""
    for sink in list(_sinks):
        try:
            sink(alert)
        except Exception:  # a sink only enqueues or counts; never let it stop beat
            logger.exception("alert sink %r failed", sink)
    for handler in list(_handlers):
        try:
            handler(alert)
        except Exception as exc:
            if id(handler) in _failed_handlers:
                logger.debug("alert handler %r failed again: %s: %s", handler,
                             type(exc).__name__, exc)
            else:
                _failed_handlers.add(id(handler))
                logger.error("alert handler %r failed (logged once; later failures at "
                             "DEBUG)", handler, exc_info=True)


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

    def seen(self, kind: str, task_name: str | None, at: datetime) -> None:
        """Remember an alert raised elsewhere (read back from the database)."""
        key = (kind, task_name)
        last = self._last.get(key)
        if last is None or at > last:
            self._last[key] = at

    def forget_before(self, moment: datetime) -> None:
        """Drop entries older than ``moment`` (they can no longer hold anything back)."""
        for key in [k for k, at in self._last.items() if at < moment]:
            del self._last[key]


# -- webhooks ----------------------------------------------------------------------------------

WEBHOOK_FIELDS = ("url", "min_level", "headers", "timeout")
DEFAULT_WEBHOOK_TIMEOUT = 5.0
MAX_WEBHOOK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Webhook:
    """One entry of ``beatx_alert_webhooks``: alerts of ``min_level`` or above are POSTed as
    JSON to ``url`` with ``headers``, each attempt waiting at most ``timeout`` seconds."""

    url: str
    min_level: str = "info"
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT

    def wants(self, alert: Alert) -> bool:
        return level_rank(alert.level) >= level_rank(self.min_level)

    @property
    def safe_url(self) -> str:
        """The URL as logged: scheme, host, port and path only (a token may hide in the
        query string or the user part)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"

    def __repr__(self) -> str:  # never show header values
        return (f"Webhook(url={self.safe_url!r}, min_level={self.min_level!r}, "
                f"headers=[{', '.join(k for k, _ in self.headers)}], timeout={self.timeout:g})")


def webhook_from_dict(data: Any, index: int = 0,
                      setting: str = "beatx_alert_webhooks") -> Webhook:
    """Validate one webhook entry; errors name ``beatx_alert_webhooks[i].<key>``."""
    where = f"{setting}[{index}]"
    if isinstance(data, Webhook):
        return data
    if not isinstance(data, Mapping):
        raise InvalidSchedule(f"{where} must be a mapping with a 'url'", where)
    unknown = sorted(str(k) for k in set(data) - set(WEBHOOK_FIELDS))
    if unknown:
        raise InvalidSchedule(f"{where}: unknown key {unknown[0]!r} (known: "
                              f"{', '.join(WEBHOOK_FIELDS)})", f"{where}.{unknown[0]}")
    url = data.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSchedule(f"{where}.url must be an http:// or https:// URL with a host",
                              f"{where}.url")
    level = data.get("min_level", "info")
    if level not in LEVELS:
        raise InvalidSchedule(f"{where}.min_level {level!r} is not one of {LEVELS}",
                              f"{where}.min_level")
    headers = data.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise InvalidSchedule(f"{where}.headers must be a mapping of names to strings",
                              f"{where}.headers")
    pairs: list[tuple[str, str]] = []
    for key, value in headers.items():
        # The value is never echoed: it is typically a token.
        if not isinstance(key, str) or not key or any(c in key for c in ":\r\n ") \
                or not key.isascii():
            raise InvalidSchedule(f"{where}.headers: {key!r} is not a header name",
                                  f"{where}.headers")
        if not isinstance(value, str) or any(c in value for c in "\r\n"):
            raise InvalidSchedule(f"{where}.headers[{key!r}]: the value must be a string "
                                  "without line breaks", f"{where}.headers")
        pairs.append((key, value))
    timeout = data.get("timeout", DEFAULT_WEBHOOK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_WEBHOOK_TIMEOUT:
        raise InvalidSchedule(f"{where}.timeout {timeout!r} must be a number of seconds > 0 "
                              f"and <= {MAX_WEBHOOK_TIMEOUT:g}", f"{where}.timeout")
    return Webhook(url=url, min_level=level, headers=tuple(pairs),  # type: ignore[arg-type]
                   timeout=float(timeout))


def webhooks_from_setting(value: Any, setting: str = "beatx_alert_webhooks"
                          ) -> tuple[Webhook, ...]:
    """Validate the whole ``beatx_alert_webhooks`` setting (a list of mappings)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise InvalidSchedule(f"{setting} must be a list of mappings", setting)
    return tuple(webhook_from_dict(item, i, setting) for i, item in enumerate(value))


#: ``format`` of the JSON document a webhook receives.
PAYLOAD_FORMAT = "celery-beatx-alert/1"


def alert_payload(alert: Alert, instance: str | None = None) -> dict[str, Any]:
    """The JSON document POSTed to webhooks (see README, "Alerts")."""
    return {
        "format": PAYLOAD_FORMAT,
        "id": alert.id,
        "level": alert.level,
        "kind": alert.kind,
        "task_name": alert.task_name,
        "message": alert.message,
        "at": alert.at.isoformat(),
        "data": alert.data,
        "instance": instance,
    }
