"""The ``beatx_*`` settings, read once from a Celery app's configuration."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

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
    alert_webhooks: tuple[dict[str, Any], ...] = ()
    default_alerts: Any = None
    history_keep: int = 1000
    timezone: str = "UTC"
    #: Most messages published between a record and its confirm (the duplicates a kill -9
    #: can cause, always with the same task id).
    max_in_flight: int = 100

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
            alert_webhooks=tuple(get("beatx_alert_webhooks", ())),
            default_alerts=conf.get("beatx_default_alerts"),
            history_keep=int(get("beatx_history_keep", 1000)),
            max_in_flight=int(get("beatx_max_in_flight", 100)),
            timezone=str(conf.get("timezone") or "UTC"),
        )
