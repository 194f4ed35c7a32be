"""``BeatAdmin``: the Python admin API over the schedule database.

Every public call is one database transaction; batch calls are all-or-nothing.  Input is
validated completely before anything is written.  ``BeatAdmin`` is a thin face: each concern
lives in its own module of this package.
"""

from __future__ import annotations

from ._base import find_cycle, first_run_at
from .alerts import AlertsMixin
from .conflicts import ConflictsMixin
from .dependencies import DependenciesMixin
from .health import HealthMixin, HealthReport
from .locks import LocksMixin
from .pausing import PausingMixin
from .runs import RunInfo, RunsMixin, TaskStats
from .tasks import TasksMixin, Version
from .transfer import EXPORT_FORMAT, TransferMixin

__all__ = ["BeatAdmin", "EXPORT_FORMAT", "HealthReport", "RunInfo", "TaskStats", "Version",
           "find_cycle", "first_run_at"]


class BeatAdmin(TasksMixin, TransferMixin, RunsMixin, PausingMixin, DependenciesMixin,
                AlertsMixin, HealthMixin, ConflictsMixin, LocksMixin):
    """Change schedules while beat runs.

    :param app: a Celery app; its ``beatx_*`` settings choose the database.
    :param url: a database URL, instead of ``app``.
    :param engine: an existing SQLAlchemy engine, instead of either.
    :param auto_migrate: upgrade an empty or old schema on first use (default: the app's
        ``beatx_auto_migrate``, else ``True``); when off, an old schema raises
        :class:`~celery_beatx.errors.SchemaOutOfDate`.
    :param clock: returns the current aware time; injected by tests.
    :param instance_id: who makes the changes (recorded in versions and locks).
    """
