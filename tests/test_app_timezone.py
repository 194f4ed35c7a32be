"""Crontabs are read in the zone Celery itself uses for the app (``app.timezone``).

Celery's rule: the ``timezone`` setting, which Celery's settings also read from Django's
``TIME_ZONE``; without one, UTC if ``enable_utc`` (the default), else the local zone. The
oracle is Celery's own ``crontab`` (``remaining_estimate`` and ``is_due`` with a controlled
``nowfun``): the next 20 times ``BeatAdmin.next_runs`` gives must be the ones Celery gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab as celery_crontab

from celery_beatx import BeatAdmin
from celery_beatx.config import BeatxConfig, app_timezone
from celery_beatx.errors import InvalidSchedule
from celery_beatx.scheduler import Scheduler
from dbs import fresh_database

UTC = timezone.utc
RUNS = 20
#: A Wednesday; 20 runs of the monthly and quarterly entries cross both DST changes.
START = datetime(2026, 1, 14, 10, 17, 23, tzinfo=UTC)

#: name -> the celery crontab keyword arguments of a ``beat_schedule`` entry.
CRONTABS: dict[str, dict[str, object]] = {
    "nightly": {"minute": 0, "hour": 0},
    "weekdays-0930": {"minute": 30, "hour": 9, "day_of_week": "mon-fri"},
    "quarter-hour": {"minute": "*/15"},
    "business-hours": {"minute": 7, "hour": "9-17", "day_of_week": "1-5"},
    "twice-a-month": {"minute": 0, "hour": 6, "day_of_month": "1,15"},
    "month-end": {"minute": 45, "hour": "8-17/3", "day_of_month": "28-31"},
    "quarterly": {"minute": 0, "hour": 12, "day_of_month": 1, "month_of_year": "*/3"},
    "sunday-late": {"minute": 59, "hour": 23, "day_of_week": "sun"},
    "friday-13th": {"minute": 0, "hour": 9, "day_of_week": "fri", "day_of_month": 13},
}


def celery_times(app: Celery, fields: dict[str, object], start: datetime,
                 n: int) -> list[datetime]:
    """The next ``n`` run times Celery's own crontab gives, each from the previous one."""
    now = [start]
    schedule = celery_crontab(**fields, app=app, nowfun=lambda: now[0])  # type: ignore[arg-type]
    out: list[datetime] = []
    last = start
    while len(out) < n:
        now[0] = last
        nxt = (last + schedule.remaining_estimate(last)).astimezone(UTC)
        now[0] = nxt - timedelta(seconds=1)
        assert not schedule.is_due(last).is_due
        now[0] = nxt
        assert schedule.is_due(last).is_due
        out.append(nxt)
        last = nxt
    return out


def beat_schedule() -> dict[str, dict[str, object]]:
    return {name: {"task": f"proj.tasks.{name.replace('-', '_')}",
                   "schedule": celery_crontab(**fields)}  # type: ignore[arg-type]
            for name, fields in CRONTABS.items()}


def clock() -> datetime:
    return START


def sync_config(app: Celery) -> None:
    """What beat does at start: store ``beat_schedule`` as config tasks."""
    scheduler = Scheduler(app, lazy=True, clock=clock)
    scheduler.setup_schedule()
    scheduler.engine.dispose()


def assert_celery_times(app: Celery, zone: str) -> None:
    admin = BeatAdmin(app, clock=clock)
    try:
        assert admin.timezone == zone
        for name, fields in CRONTABS.items():
            info = admin.get(name)
            assert info.schedule_dict["timezone"] == zone, name
            assert admin.next_runs(name, RUNS, now=START) == \
                celery_times(app, fields, START, RUNS), name
    finally:
        admin.engine.dispose()


@pytest.fixture(scope="module")
def django_settings() -> None:
    """Django settings with ``TIME_ZONE`` and a ``CELERY_BEAT_SCHEDULE``, no Celery zone."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(TIME_ZONE="US/Pacific", USE_TZ=True,
                           CELERY_BEAT_SCHEDULE=beat_schedule(),
                           CELERY_RESULT_EXPIRES=None)
    assert settings.TIME_ZONE == "US/Pacific"
    assert not hasattr(settings, "CELERY_TIMEZONE")


@pytest.fixture
def django_app(django_settings: None, db_url: str) -> Celery:
    app = Celery("djproj", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.beatx_database_url = db_url
    return app


def test_django_time_zone_beat_schedule_fires_at_celerys_times(django_app):
    assert app_timezone(django_app) == "US/Pacific"
    sync_config(django_app)
    assert_celery_times(django_app, "US/Pacific")
    # Not a tautology between two wrong zones: midnight Pacific is 08:00 UTC in January.
    admin = BeatAdmin(django_app, clock=clock)
    assert admin.next_runs("nightly", 1, now=START) == [datetime(2026, 1, 15, 8, tzinfo=UTC)]
    admin.engine.dispose()


def test_django_time_zone_admin_add_of_a_celery_crontab(django_app):
    admin = BeatAdmin(django_app, clock=clock)
    try:
        for name, fields in CRONTABS.items():
            admin.add(name, "proj.tasks.x", celery_crontab(**fields))  # type: ignore[arg-type]
    finally:
        admin.engine.dispose()
    assert_celery_times(django_app, "US/Pacific")


@pytest.mark.parametrize("zone", ["Australia/Sydney", "Asia/Kolkata"])
def test_enable_utc_false_with_a_timezone(db_url, zone):
    app = Celery("proj", set_as_current=False)
    app.conf.update(enable_utc=False, timezone=zone, beat_schedule=beat_schedule(),
                    beatx_database_url=db_url, result_expires=None)
    sync_config(app)
    assert_celery_times(app, zone)


def test_the_celery_timezone_setting_wins_over_django_time_zone(django_settings):
    app = Celery("djproj", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.timezone = "Asia/Tokyo"
    assert app_timezone(app) == "Asia/Tokyo" == app.timezone.key


def test_resolution_follows_celery():
    app = Celery("proj", set_as_current=False)
    assert app_timezone(app) == "UTC"
    app.conf.timezone = ZoneInfo("Europe/Berlin")  # Celery accepts a tzinfo too
    assert BeatxConfig.from_app(app).timezone == "Europe/Berlin"
    # A zone Celery has already resolved (and cached) for the app is the one it keeps.
    cached = Celery("proj", set_as_current=False)
    cached.conf.timezone = "America/Chicago"
    assert cached.timezone.key == "America/Chicago"
    cached.conf.timezone = "Europe/Paris"
    assert app_timezone(cached) == "America/Chicago"
    # Reading the zone does not fill Celery's cache: a later setting still counts.
    fresh = Celery("proj", set_as_current=False)
    assert app_timezone(fresh) == "UTC"
    fresh.conf.timezone = "Asia/Tokyo"
    assert app_timezone(fresh) == "Asia/Tokyo" == fresh.timezone.key


@pytest.mark.parametrize("value", ["Mars/Olympus", timezone(timedelta(hours=2))])
def test_a_timezone_without_an_iana_name_is_refused(value):
    app = Celery("proj", set_as_current=False)
    app.conf.timezone = value
    with pytest.raises(InvalidSchedule) as info:
        BeatxConfig.from_app(app)
    assert info.value.field == "timezone" and repr(value) in str(info.value)


@pytest.mark.parametrize("tz_env", ["America/New_York", "Asia/Kathmandu"])
def test_enable_utc_false_without_a_timezone_is_the_local_zone(tz_env):
    """Celery's local zone (``tzlocal``, which honours ``TZ``) is the one we use."""
    code = textwrap.dedent("""
        from celery import Celery
        from celery_beatx.config import BeatxConfig
        app = Celery("proj", set_as_current=False)
        app.conf.enable_utc = False
        print(BeatxConfig.from_app(app).timezone, app.timezone.key)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=dict(os.environ, TZ=tz_env))
    assert out.stdout.split() == [tz_env, tz_env]


# -- the command line -----------------------------------------------------------------------

PROJ = """
from celery import Celery

app = Celery("tzproj", set_as_current=False)
app.conf.timezone = "Europe/Berlin"
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def cli_db(request, tmp_path):
    from celery_beatx import migrate
    from celery_beatx.store.engine import make_engine

    with fresh_database(request.param, str(tmp_path)) as url:
        engine = make_engine(url)  # the CLI creates no database but with `migrate`
        migrate.upgrade(engine)
        engine.dispose()
        yield url


def run_cli(tmp_path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BEATX_DATABASE_URL=url,
               PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "celery", "-A", "tzproj", "beatx", *args],
                          capture_output=True, text=True, check=True, timeout=60,
                          cwd=tmp_path, env=env)


def test_cli_cron_is_read_in_the_apps_zone(tmp_path, cli_db):
    (tmp_path / "tzproj.py").write_text(PROJ)
    run_cli(tmp_path, cli_db, "add", "x", "t", "--cron", "0 9 * * *")
    run_cli(tmp_path, cli_db, "add", "y", "t", "--cron", "0 9 * * *", "--timezone",
            "Asia/Tokyo")
    shown = json.loads(run_cli(tmp_path, cli_db, "show", "x", "--json").stdout)
    assert shown["schedule"] == {"type": "cron", "expr": "0 9 * * *",
                                 "timezone": "Europe/Berlin"}
    nxt = json.loads(run_cli(tmp_path, cli_db, "next", "x", "-n", "3", "--json").stdout)
    berlin = ZoneInfo("Europe/Berlin")
    assert [datetime.fromisoformat(t).astimezone(berlin).time().isoformat() for t in nxt] \
        == ["09:00:00"] * 3
    admin = BeatAdmin(url=cli_db)
    try:
        schedule = admin.get("x").schedule
        assert admin.get("y").schedule_dict["timezone"] == "Asia/Tokyo"
    finally:
        admin.engine.dispose()
    # Across the March change: 09:00 Berlin is 08:00 UTC, then 07:00 UTC.
    runs, t = [], datetime(2026, 3, 27, 12, tzinfo=UTC)
    for _ in range(4):
        t = schedule.next_after(t)
        runs.append(t)
    assert runs == [datetime(2026, 3, 28, 8, tzinfo=UTC), datetime(2026, 3, 29, 7, tzinfo=UTC),
                    datetime(2026, 3, 30, 7, tzinfo=UTC), datetime(2026, 3, 31, 7, tzinfo=UTC)]
