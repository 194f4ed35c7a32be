"""``from_celery``: celery's schedule objects (and numbers) become celery-beatx schedules."""

from __future__ import annotations

import ast
import importlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from celery import Celery
from celery import schedules as celery_schedules

from celery_beatx.schedules import Schedule, cron, crontab, every, from_celery, solar

UTC = timezone.utc


def test_numbers_and_timedeltas_become_intervals():
    assert from_celery(30) == every(seconds=30)
    assert from_celery(1.5) == every(seconds=1.5)
    assert from_celery(timedelta(minutes=5)) == every(minutes=5)
    assert from_celery(celery_schedules.schedule(timedelta(hours=1))) == every(hours=1)
    assert from_celery(celery_schedules.schedule(90)) == Schedule.interval(90)


def test_own_schedules_pass_through_unchanged():
    for ours in (every(seconds=5), crontab(0, 9), cron("0 9 * * 1-5"),
                 solar("sunset", 1, 2)):
        assert from_celery(ours) is ours


def test_crontab_keeps_the_original_fields():
    theirs = celery_schedules.crontab(minute="*/15", hour="9-17", day_of_week="mon-fri",
                                      day_of_month="1-7,15-21", month_of_year={1, 7})
    ours = from_celery(theirs)
    assert ours == crontab("*/15", "9-17", "mon-fri", "1-7,15-21", "1,7")
    assert ours.timezone == "UTC"
    assert from_celery(celery_schedules.crontab(hour=7)).to_dict() == {
        "type": "crontab", "minute": "*", "hour": "7", "day_of_week": "*",
        "day_of_month": "*", "month_of_year": "*", "timezone": "UTC"}


def test_crontab_takes_the_app_timezone():
    theirs = celery_schedules.crontab(minute=0, hour=9)
    assert from_celery(theirs, app_timezone="Europe/Paris").timezone == "Europe/Paris"
    app = Celery("convert", set_as_current=False)
    app.conf.timezone = "Asia/Tokyo"
    ours = from_celery(theirs, app_timezone=app.timezone)  # a ZoneInfo
    assert ours.timezone == "Asia/Tokyo"
    assert ours.next_after(datetime(2024, 6, 1, tzinfo=UTC)) == datetime(
        2024, 6, 2, 9, tzinfo=ZoneInfo("Asia/Tokyo"))


def test_solar_is_converted_without_ephem():
    # celery's solar needs ``ephem`` in __init__; build one the way unpickling would.
    theirs = celery_schedules.solar.__new__(celery_schedules.solar)
    theirs.event, theirs.lat, theirs.lon = "sunrise", 51.5074, -0.1278
    assert from_celery(theirs) == solar("sunrise", 51.5074, -0.1278)


def test_schedules_package_imports_celery_only_inside_from_celery():
    package = Path(importlib.import_module("celery_beatx.schedules").__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        allowed = {id(node) for func in ast.walk(tree)
                   if isinstance(func, ast.FunctionDef) and func.name == "from_celery"
                   for node in ast.walk(func)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            roots = {name.split(".")[0] for name in names}
            assert "sqlalchemy" not in roots, path
            assert "celery" not in roots or id(node) in allowed, path
