"""The ``beatx_*`` settings, read once from a Celery app's configuration."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from datetime import timezone as dt_timezone
from typing import Any
from zoneinfo import ZoneInfo

from .alerts import (
    DEFAULT_COOLDOWN,
    MAX_ALERT_SECONDS,
    AlertConfig,
    Webhook,
    webhooks_from_setting,
)
from .errors import InvalidSchedule
from .schedules._zones import zone_key

DEFAULT_SYNC_INTERVAL = 1.0


def default_instance_id() -> str:
    """``hostname:pid``, this process's name in locks and history."""
    return f"{socket.gethostname()}:{os.getpid()}"


def default_database_url(schedule_filename: str | None) -> str:
    """``BEATX_DATABASE_URL``, else a SQLite file next to beat's ``-s`` filename."""
    env = os.environ.get("BEATX_DATABASE_URL")
    if env:
        return env
    base = schedule_filename or "celerybeat-schedule"
    return f"sqlite:///{os.path.abspath(base)}.sqlite3"


def _zone_name(zone: Any) -> str | None:
    """The IANA name of a zone given as Celery accepts it (name or tzinfo), else ``None``.

    :raises InvalidSchedule: a name that is not a known zone.
    """
    if zone is dt_timezone.utc:
        return "UTC"
    if isinstance(zone, str):
        return zone_key(zone)
    if isinstance(zone, ZoneInfo):
        key = zone.key
    else:  # pytz zones carry their name in ``zone``
        key = getattr(zone, "zone", None)
    if not isinstance(key, str):
        return None
    try:
        return zone_key(key)
    except InvalidSchedule:
        return None


def _local_zone_name() -> str:
    """The IANA name of the zone Celery calls "local" (``celery.utils.time.timezone.local``).

    Celery takes the local zone from ``tzlocal``; when that zone has no usable IANA name,
    :meth:`~celery_beatx.timezones.TimezoneUtils.detect_system_timezone` decides (``TZ``,
    ``/etc/timezone``, ``/etc/localtime``; ``"UTC"`` if none of them names a zone).
    """
    from celery.utils.time import timezone as celery_zones

    from .timezones import TimezoneUtils

    return _zone_name(celery_zones.local) or TimezoneUtils.detect_system_timezone()


def app_timezone(app: Any) -> str:
    """The IANA name of the zone Celery uses for ``app`` (what ``app.timezone`` resolves to).

    Celery's rule: the ``timezone`` setting, which Celery's settings also read from Django's
    ``TIME_ZONE`` (``config_from_object("django.conf:settings", namespace="CELERY")``);
    without one, UTC when ``enable_utc`` is true (the default), else the machine's local
    zone. A zone Celery has already resolved and cached on the app wins, as it does for
    Celery. The app's cache is not filled here, so a later configuration change still
    counts for Celery.

    :raises InvalidSchedule: the setting is not a known IANA zone (naming ``timezone``).
    """
    cached = vars(app).get("timezone") if hasattr(app, "__dict__") else None
    if cached is not None:
        name = _zone_name(cached)
        if name is not None:
            return name
    conf = app.conf
    zone = conf.timezone  # Celery's Settings: ``timezone``, else Django's ``TIME_ZONE``
    if not zone:
        return "UTC" if conf.enable_utc else _local_zone_name()
    name = _zone_name(zone)
    if name is None:
        raise InvalidSchedule(
            f"timezone {zone!r} has no IANA name; set Celery's timezone to a zone name "
            "such as 'Europe/Paris'", "timezone")
    return name


@dataclass(frozen=True)
class BeatxConfig:
    """Typed view of the ``beatx_*`` settings (see README, "Configuration")."""

    database_url: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    auto_migrate: bool = True
    sync_interval: float = DEFAULT_SYNC_INTERVAL
    ha: bool = True
    lease_seconds: float = 15.0
    instance_id: str = field(default_factory=default_instance_id)
    track_results: bool = True
    #: ``beatx_alert_webhooks``, validated (see :func:`celery_beatx.alerts.webhook_from_dict`).
    alert_webhooks: tuple[Webhook, ...] = ()
    #: ``beatx_default_alerts``: the rules of tasks that have no ``alerts`` of their own.
    default_alerts: AlertConfig | None = None
    #: ``beatx_alert_cooldown``: the same (task, kind) alert is not raised again within it.
    alert_cooldown: float = DEFAULT_COOLDOWN.total_seconds()
    #: ``beatx_metrics_port``: serve Prometheus metrics on this port (``None``: off).
    metrics_port: int | None = None
    #: ``beatx_metrics_addr``: the address the metrics server binds.
    metrics_addr: str = "0.0.0.0"
    history_keep: int = 1000
    #: ``beatx_alerts_keep_days``: resolved alerts older than this are deleted by the leader
    #: (``0``: keep all).  Open alerts are always kept.
    alerts_keep_days: float = 30.0
    #: IANA name of the app's zone, as Celery resolves it (see :func:`app_timezone`).
    timezone: str = "UTC"
    #: Most messages published between a record and its confirm (the duplicates a kill -9
    #: can cause, always with the same task id).
    max_in_flight: int = 100
    #: Longest a worker waits for the database before starting a tracked task (seconds);
    #: past it the task runs anyway and its start is written in the background.
    track_timeout: float = 1.0

    @classmethod
    def from_app(cls, app: Any, schedule_filename: str | None = None) -> BeatxConfig:
        """Read the settings from ``app.conf`` (unknown keys are simply absent)."""
        conf = app.conf

        def get(key: str, default: Any) -> Any:
            value = conf.get(key)
            return default if value is None else value

        return cls(
            database_url=get("beatx_database_url", None) or default_database_url(
                schedule_filename or conf.get("beat_schedule_filename")),
            engine_options=dict(get("beatx_engine_options", {})),
            auto_migrate=bool(get("beatx_auto_migrate", True)),
            sync_interval=float(get("beatx_sync_interval", DEFAULT_SYNC_INTERVAL)),
            ha=bool(get("beatx_ha", True)),
            lease_seconds=float(get("beatx_lease_seconds", 15)),
            instance_id=str(get("beatx_instance_id", None) or default_instance_id()),
            track_results=bool(get("beatx_track_results", True)),
            alert_webhooks=webhooks_from_setting(conf.get("beatx_alert_webhooks")),
            default_alerts=_default_alerts(conf.get("beatx_default_alerts")),
            alert_cooldown=_cooldown(get("beatx_alert_cooldown",
                                         DEFAULT_COOLDOWN.total_seconds())),
            metrics_port=_port(conf.get("beatx_metrics_port")),
            metrics_addr=_addr(get("beatx_metrics_addr", "0.0.0.0")),
            history_keep=int(get("beatx_history_keep", 1000)),
            alerts_keep_days=_keep_days(get("beatx_alerts_keep_days", 30)),
            max_in_flight=int(get("beatx_max_in_flight", 100)),
            track_timeout=float(get("beatx_track_timeout", 1.0)),
            timezone=app_timezone(app),
        )


def _default_alerts(value: Any) -> AlertConfig | None:
    if value is None:
        return None
    return AlertConfig.coerce(value, "beatx_default_alerts")


def _cooldown(value: Any) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= MAX_ALERT_SECONDS:
        raise InvalidSchedule(f"beatx_alert_cooldown {value!r} must be a number of seconds "
                              f"from 0 to {MAX_ALERT_SECONDS:g}", "beatx_alert_cooldown")
    return float(value)


def _port(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidSchedule(f"beatx_metrics_port {value!r} must be a port number 0-65535 "
                              "or None (off)", "beatx_metrics_port")
    return value


#: Longest ``beatx_alerts_keep_days`` (a century; ``0`` keeps everything for ever).
KEEP_DAYS_MAX = 36_500


def _keep_days(value: Any) -> float:
    try:
        days = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        days = float("nan")
    if not 0 <= days <= KEEP_DAYS_MAX:
        raise InvalidSchedule(f"beatx_alerts_keep_days {value!r} must be a number of days "
                              f"from 0 to {KEEP_DAYS_MAX} (0: keep all)",
                              "beatx_alerts_keep_days")
    return days


def _addr(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidSchedule(f"beatx_metrics_addr {value!r} must be an address string",
                              "beatx_metrics_addr")
    return value
