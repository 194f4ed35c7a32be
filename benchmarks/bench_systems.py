"""One adapter per measured beat scheduler, used by ``bench_scheduler.py``'s worker processes.

Each adapter knows how to put tasks in its scheduler's store, start the scheduler, change one
task the way an admin would, add tasks that are due at once, and report its storage size.
Only one adapter is ever used in a process (Django's settings, sqlalchemy-celery-beat's
session manager and Celery's current app are process-wide).

Every task calls ``bench.noop`` with ``args=[i]``; ``i`` identifies the task in the published
message, so the publish-time signal handler can tell which task a message belongs to.
"""

from __future__ import annotations

import glob
import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
TASK = "bench.noop"
QUEUE = "beatx_bench"


def task_name(i: int) -> str:
    return f"bench-{i:07d}"


def make_app(broker: str = "memory://", **conf: Any) -> Any:
    """A Celery app publishing to ``broker`` on the private queue :data:`QUEUE`."""
    from celery import Celery

    app = Celery("bench", broker=broker, set_as_current=True)
    app.conf.update(timezone="UTC", enable_utc=True, task_default_queue=QUEUE,
                    broker_connection_retry_on_startup=True, **conf)
    return app


def pg_storage(url: str) -> int:
    """Bytes of every user table of the database at ``url`` (``pg_total_relation_size``:
    heap, indexes and TOAST)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND n.nspname NOT LIKE 'pg_toast%'")).scalar_one())
    finally:
        engine.dispose()


def file_storage(path: str) -> int:
    """Bytes of ``path`` and its companions (``-wal``, ``-journal``, shelve's ``.db``)."""
    return sum(os.path.getsize(p) for p in glob.glob(glob.escape(path) + "*")
               if os.path.isfile(p))


class Adapter:
    """What the benchmark needs from one scheduler (see the module docstring)."""

    name = ""
    #: Why this scheduler has no change pick-up figure (``None``: it has one).
    no_pickup: str | None = None
    #: Seconds a tick may sleep when nothing is due (beat's loop interval).
    loop_interval = 5.0

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.backend = job["backend"]
        self.url = job.get("url")
        self.workdir = job["workdir"]
        self.broker = job.get("broker_url", "memory://")
        self.app: Any = None

    # set-up (a process of its own)
    def insert(self, n: int, cron_hour: int) -> str:
        """Store ``n`` tasks (odd: every hour; even: daily crontab at ``cron_hour``)."""
        raise NotImplementedError

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        """Store ``count`` tasks running every 60 s, task ``i`` first due at
        ``first_due[i]``."""
        raise NotImplementedError

    def storage_bytes(self) -> int | None:
        if self.backend == "postgresql":
            return pg_storage(self.url)
        return file_storage(self.sqlite_path)

    # measuring (another process)
    def open(self) -> None:
        """Create the app (and whatever module set-up the scheduler needs)."""
        raise NotImplementedError

    def start(self) -> Any:
        """Construct the scheduler (not lazy); the caller runs the first tick."""
        raise NotImplementedError

    def change(self, name: str, i: int) -> None:
        """Set the args of task ``name`` to ``[i]`` as an admin would (committed)."""
        raise NotImplementedError

    def entry_args(self, sched: Any, name: str) -> Any:
        entry = sched.schedule.get(name)
        return None if entry is None else list(entry.args)

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        """Store tasks ``names`` (args ``[first + j]``) due at once, every hour."""
        raise NotImplementedError

    def flush_state(self, sched: Any) -> None:
        """Write the run state the scheduler keeps in memory (its ``sync()``)."""
        sched.sync()

    def close(self) -> None:
        pass

    @property
    def sqlite_path(self) -> str:
        return os.path.join(self.workdir, f"{self.name}.sqlite3")


# -- celery-beatx ------------------------------------------------------------------------------

class Ours(Adapter):
    name = "ours"
    loop_interval = 1.0

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(job)
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.sqlite_path}"

    def _admin(self, clock: Any = None) -> Any:
        from celery_beatx.admin import BeatAdmin

        return BeatAdmin(url=self.url) if clock is None else BeatAdmin(url=self.url, clock=clock)

    def insert(self, n: int, cron_hour: int) -> str:
        from celery_beatx import crontab, every

        admin = self._admin()
        hourly, daily = every(hours=1), crontab(minute="0", hour=str(cron_hour))
        step = 20_000
        for lo in range(0, n, step):
            admin.add_many([{"name": task_name(i), "task": TASK, "args": [i],
                             "schedule": hourly if i % 2 else daily}
                            for i in range(lo, min(n, lo + step))])
        admin.engine.dispose()
        return f"BeatAdmin.add_many() in calls of {step}"

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        from celery_beatx import every

        groups: dict[datetime, list[int]] = {}
        for i, when in enumerate(first_due):
            groups.setdefault(when, []).append(i)
        minute = every(seconds=60)
        for when, members in groups.items():
            # A task added at time t runs every(60) first at t + 60 s.
            admin = self._admin(clock=lambda at=when - timedelta(seconds=60): at)
            admin.add_many([{"name": task_name(i), "task": TASK, "args": [i],
                             "schedule": minute} for i in members])
            admin.engine.dispose()
        return (f"BeatAdmin.add_many() per first-due instant ({len(groups)} calls), the "
                "admin's clock set 60 s before it")

    def open(self) -> None:
        self.app = make_app(self.broker, beatx_database_url=self.url)
        self.admin = self._admin()

    def start(self) -> Any:
        from celery_beatx.scheduler import Scheduler

        return Scheduler(self.app, lazy=False,
                         schedule_filename=os.path.join(self.workdir, "ours-beat"))

    def change(self, name: str, i: int) -> None:
        self.admin.update(name, args=[i])

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        from celery_beatx import every

        past = datetime.now(UTC) - timedelta(hours=2)
        admin = self._admin(clock=lambda: past)
        admin.add_many([{"name": name, "task": TASK, "args": [first + j],
                         "schedule": every(hours=1)} for j, name in enumerate(names)])
        admin.engine.dispose()

    def sent_runs(self, names_like: str) -> int:
        """Runs of tasks named like ``names_like`` marked ``sent`` in ``beatx_runs``."""
        import sqlalchemy as sa

        with self.admin.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM beatx_runs WHERE status = 'sent' "
                "AND task_name LIKE :p"), {"p": names_like}).scalar_one())

    def close(self) -> None:
        if getattr(self, "admin", None) is not None:
            self.admin.engine.dispose()


# -- celery's PersistentScheduler ----------------------------------------------------------

class CeleryShelve(Adapter):
    name = "celery"
    no_pickup = "n/a: beat_schedule changes need a restart"
    loop_interval = 300.0

    def _path(self) -> str:
        return os.path.join(self.workdir, "celerybeat-schedule")

    def insert(self, n: int, cron_hour: int) -> str:
        return f"app.conf.beat_schedule with {n} entries (in code: built in each process)"

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        return f"app.conf.beat_schedule with {count} entries, last_run_at set after start"

    def _schedule(self) -> dict[str, Any]:
        from celery.schedules import crontab

        kind = self.job.get("entries")
        if kind is None:
            return {}
        if kind["kind"] == "cron":
            hour, n = kind["cron_hour"], kind["n"]
            hourly, daily = timedelta(hours=1), crontab(minute="0", hour=str(hour))
            return {task_name(i): {"task": TASK, "args": [i],
                                   "schedule": hourly if i % 2 else daily}
                    for i in range(n)}
        return {task_name(i): {"task": TASK, "args": [i], "schedule": timedelta(seconds=60)}
                for i in range(kind["n"])}

    def storage_bytes(self) -> int | None:
        return file_storage(self._path())

    def open(self) -> None:
        self.app = make_app(self.broker, beat_schedule=self._schedule())

    def start(self) -> Any:
        from celery.beat import PersistentScheduler

        return PersistentScheduler(self.app, schedule_filename=self._path(), lazy=False)

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        past = self.app.now() - timedelta(hours=2)
        for j, name in enumerate(names):
            sched.add(name=name, task=TASK, args=[first + j], schedule=timedelta(hours=1),
                      last_run_at=past)


# -- sqlalchemy-celery-beat --------------------------------------------------------------

class SqlalchemyBeat(Adapter):
    name = "sqlalchemy"

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(job)
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.sqlite_path}"

    def _session(self) -> Any:
        from sqlalchemy_celery_beat.schedulers import DEFAULT_BEAT_SCHEMA, session_manager

        engine, factory = session_manager.create_session(self.url, schema=DEFAULT_BEAT_SCHEMA)
        session_manager.prepare_models(engine, DEFAULT_BEAT_SCHEMA)
        return factory

    def _rows(self, indexes: Any, schedule_of: Any, last_run: Any) -> None:
        from sqlalchemy import insert
        from sqlalchemy_celery_beat.models import PeriodicTask, PeriodicTaskChanged

        factory = self._session()
        with factory() as session:
            models = schedule_of(session)
            now = datetime.now(UTC)
            rows = []
            for i in indexes:
                model, name = models(i)
                rows.append({"name": name, "task": TASK, "args": json.dumps([i[1]]),
                             "kwargs": "{}", "headers": "{}", "enabled": True,
                             "one_off": False, "total_run_count": 0,
                             "last_run_at": last_run(i), "date_changed": now,
                             "description": "", "discriminator": type(model).__name__.lower(),
                             "schedule_id": model.id})
                if len(rows) >= 5000:
                    session.execute(insert(PeriodicTask), rows)
                    rows = []
            if rows:
                session.execute(insert(PeriodicTask), rows)
            session.commit()
            PeriodicTaskChanged.update_from_session(session)

    def insert(self, n: int, cron_hour: int) -> str:
        from sqlalchemy_celery_beat.models import CrontabSchedule, IntervalSchedule, Period

        def schedules(session: Any) -> Any:
            interval = IntervalSchedule(every=1, period=Period.HOURS)
            cron = CrontabSchedule(minute="0", hour=str(cron_hour), day_of_week="*",
                                   day_of_month="*", month_of_year="*", timezone="UTC")
            session.add_all([interval, cron])
            session.commit()
            return lambda i: (interval if i[1] % 2 else cron, i[0])

        now = datetime.now(UTC)
        self._rows(((task_name(i), i) for i in range(n)), schedules, lambda i: now)
        return "bulk INSERT of PeriodicTask rows (5,000 per statement)"

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        from sqlalchemy_celery_beat.models import IntervalSchedule, Period

        def schedules(session: Any) -> Any:
            minute = IntervalSchedule(every=60, period=Period.SECONDS)
            session.add(minute)
            session.commit()
            return lambda i: (minute, i[0])

        self._rows(((task_name(i), i) for i in range(count)), schedules,
                   lambda i: first_due[i[1]] - timedelta(seconds=60))
        return "bulk INSERT of PeriodicTask rows, last_run_at 60 s before the first due time"

    def open(self) -> None:
        self.app = make_app(self.broker, beat_dburi=self.url)
        self.factory = self._session()

    def start(self) -> Any:
        from sqlalchemy_celery_beat.schedulers import DatabaseScheduler

        return DatabaseScheduler(app=self.app, lazy=False)

    def change(self, name: str, i: int) -> None:
        from sqlalchemy import select
        from sqlalchemy_celery_beat.models import PeriodicTask

        with self.factory() as session:
            row = session.scalars(select(PeriodicTask).where(PeriodicTask.name == name)).one()
            row.args = json.dumps([i])
            session.commit()

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        from sqlalchemy_celery_beat.models import IntervalSchedule, Period

        def schedules(session: Any) -> Any:
            hourly = IntervalSchedule(every=1, period=Period.HOURS)
            session.add(hourly)
            session.commit()
            return lambda i: (hourly, i[0])

        past = datetime.now(UTC) - timedelta(hours=2)
        self._rows(((name, first + j) for j, name in enumerate(names)), schedules,
                   lambda i: past)


# -- django-celery-beat ----------------------------------------------------------------------

class DjangoBeat(Adapter):
    name = "django"

    def _setup_django(self) -> None:
        import django
        from django.conf import settings

        if settings.configured:
            return
        if self.backend == "postgresql":
            from sqlalchemy.engine import make_url

            url = make_url(self.url)
            db = {"ENGINE": "django.db.backends.postgresql", "NAME": url.database,
                  "USER": url.username or "postgres", "HOST": url.host or "127.0.0.1",
                  "PORT": str(url.port or 5432), "PASSWORD": url.password or ""}
        else:
            db = {"ENGINE": "django.db.backends.sqlite3", "NAME": self.sqlite_path}
        settings.configure(INSTALLED_APPS=["django_celery_beat"], DATABASES={"default": db},
                           USE_TZ=True, TIME_ZONE="UTC",
                           DEFAULT_AUTO_FIELD="django.db.models.AutoField",
                           LOGGING_CONFIG=None)
        django.setup()

    def _bulk(self, rows: Any) -> None:
        from django_celery_beat.models import PeriodicTask, PeriodicTasks

        PeriodicTask.objects.bulk_create(rows, batch_size=1000)
        PeriodicTasks.update_changed()

    def insert(self, n: int, cron_hour: int) -> str:
        self._setup_django()
        from django.core.management import call_command
        from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

        call_command("migrate", verbosity=0)
        interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
        cron = CrontabSchedule.objects.create(minute="0", hour=str(cron_hour), timezone="UTC")
        now = datetime.now(UTC)
        self._bulk(PeriodicTask(name=task_name(i), task=TASK, args=json.dumps([i]),
                                last_run_at=now,
                                **({"interval": interval} if i % 2 else {"crontab": cron}))
                   for i in range(n))
        return "PeriodicTask.objects.bulk_create() (1,000 per batch), after migrate"

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        self._setup_django()
        from django.core.management import call_command
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        call_command("migrate", verbosity=0)
        minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
        self._bulk(PeriodicTask(name=task_name(i), task=TASK, args=json.dumps([i]),
                                interval=minute,
                                last_run_at=first_due[i] - timedelta(seconds=60))
                   for i in range(count))
        return "PeriodicTask.objects.bulk_create(), last_run_at 60 s before the first due time"

    def open(self) -> None:
        self._setup_django()
        self.app = make_app(self.broker)

    def start(self) -> Any:
        from django_celery_beat.schedulers import DatabaseScheduler

        return DatabaseScheduler(self.app, lazy=False)

    def change(self, name: str, i: int) -> None:
        from django_celery_beat.models import PeriodicTask

        row = PeriodicTask.objects.get(name=name)
        row.args = json.dumps([i])
        row.save()

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        from django_celery_beat.models import IntervalSchedule, PeriodicTask

        hourly, _ = IntervalSchedule.objects.get_or_create(every=1,
                                                           period=IntervalSchedule.HOURS)
        past = datetime.now(UTC) - timedelta(hours=2)
        self._bulk(PeriodicTask(name=name, task=TASK, args=json.dumps([first + j]),
                                interval=hourly, last_run_at=past)
                   for j, name in enumerate(names))

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


# -- RedBeat -------------------------------------------------------------------------------

class RedBeat(Adapter):
    name = "redbeat"
    no_pickup = "n/a: entries are re-read from Redis when due"
    loop_interval = 300.0

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.job["redbeat_url"])

    def _app(self) -> Any:
        return make_app(self.broker, redbeat_redis_url=self.job["redbeat_url"],
                        redbeat_lock_timeout=60)

    def _save(self, app: Any, items: Any) -> None:
        from redbeat.schedulers import RedBeatSchedulerEntry

        for name, schedule, args, last in items:
            RedBeatSchedulerEntry(name, TASK, schedule, args=args, app=app,
                                  last_run_at=last).save()

    def insert(self, n: int, cron_hour: int) -> str:
        from celery.schedules import crontab, schedule

        app = self._app()
        now = app.now()
        hourly, daily = schedule(timedelta(hours=1)), crontab(minute="0", hour=str(cron_hour))
        self._save(app, ((task_name(i), hourly if i % 2 else daily, [i], now)
                         for i in range(n)))
        return "RedBeatSchedulerEntry(...).save() per task"

    def insert_staggered(self, count: int, first_due: list[datetime]) -> str:
        from celery.schedules import schedule

        app = self._app()
        minute = schedule(timedelta(seconds=60))
        self._save(app, ((task_name(i), minute, [i], first_due[i] - timedelta(seconds=60))
                         for i in range(count)))
        return "RedBeatSchedulerEntry(...).save() per task, last_run_at 60 s before due"

    def storage_bytes(self) -> int | None:
        client = self._client()
        total = 0
        for key in client.scan_iter(count=1000):
            total += client.memory_usage(key) or 0
        return total

    def open(self) -> None:
        self.app = self._app()

    def start(self) -> Any:
        from types import SimpleNamespace

        from redbeat.schedulers import RedBeatScheduler, acquire_distributed_beat_lock

        sched = RedBeatScheduler(self.app, lazy=False)
        # What celery beat's beat_init signal does: take the distributed lock.
        acquire_distributed_beat_lock(sender=SimpleNamespace(scheduler=sched))
        return sched

    def add_due(self, sched: Any, names: list[str], first: int) -> None:
        from celery.schedules import schedule

        past = self.app.now() - timedelta(hours=2)
        hourly = schedule(timedelta(hours=1))
        self._save(self.app, ((name, hourly, [first + j], past)
                              for j, name in enumerate(names)))

    def flush_state(self, sched: Any) -> None:
        """RedBeat writes each entry's state to Redis when it sends it."""


ADAPTERS: dict[str, type[Adapter]] = {
    "ours": Ours, "celery": CeleryShelve, "sqlalchemy": SqlalchemyBeat, "django": DjangoBeat,
    "redbeat": RedBeat,
}
