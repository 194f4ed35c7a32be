"""A converted celery crontab fires exactly when celery's own crontab does.

Celery computes the next run as ``last_run_at + delta`` where ``remaining_delta`` gives the
``ffwd`` delta; that is deterministic given ``last_run_at`` (``now`` only matters for the
remaining time). The comparison runs in zones without DST (celery's DST handling is not the
reference there), over a few hundred seeded random crontabs that mix ``*``, ``*/n``, ranges,
stepped ranges, lists, names, ints and sets, with day_of_week and day_of_month often both
restricted (celery's AND rule).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.schedules import crontab as celery_crontab

from celery_beatx.schedules import cron, crontab, from_celery

UTC = timezone.utc
ZONES = ("UTC", "Asia/Tokyo", "Asia/Kolkata")
CASES = 300
RUNS = 10
_APPS = {}


def _app(zone: str) -> Celery:
    if zone not in _APPS:
        app = Celery("parity", set_as_current=False)
        app.conf.timezone = zone
        app.conf.enable_utc = True
        _APPS[zone] = app
    return _APPS[zone]


def _celery_next(schedule: celery_crontab, after: datetime) -> datetime:
    last, delta, _now = schedule.remaining_delta(after)
    return (last + delta).astimezone(UTC)


def _field(rng: random.Random, low: int, high: int, names: tuple[str, ...] = ()) -> object:
    kind = rng.random()
    if kind < 0.25:
        return "*"
    if kind < 0.35:
        return f"*/{rng.randint(2, max(2, (high - low) // 2))}"
    if kind < 0.45:
        return rng.randint(low, high)
    if kind < 0.55:
        return set(rng.sample(range(low, high + 1), rng.randint(1, min(4, high - low))))
    if kind < 0.65:
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 2)))
    if kind < 0.72 and names:
        first = rng.randrange(len(names) - 1)
        last = rng.randrange(first + 1, len(names))
        return f"{names[first]}-{names[last]}".upper() if rng.random() < 0.3 else \
            f"{names[first]}-{names[last]}"
    if kind < 0.78 and names:
        return ",".join(rng.sample(names, 2))
    first = rng.randint(low, high - 1)
    last = rng.randint(first + 1, high)
    if kind < 0.9:
        return f"{first}-{last}"
    return f"{first}-{last}/{rng.randint(2, 5)}"


def _fields(rng: random.Random) -> tuple[object, ...]:
    minute = _field(rng, 0, 59)
    hour = _field(rng, 0, 23)
    day_of_week = _field(rng, 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
    day_of_month = rng.choice(["*", "*", "13", "1-15", "*/7", "29-31", "1,15", "28-31", 31])
    if rng.random() < 0.3:
        day_of_month = _field(rng, 1, 31)
    month = rng.choice(["*", "*", "*", "jan-mar", "2", "*/3", "feb,aug", "11-12", [1, 6]])
    return minute, hour, day_of_week, day_of_month, month


def _cases():
    rng = random.Random(20240613)
    produced = 0
    while produced < CASES:
        fields = _fields(rng)
        zone = ZONES[produced % len(ZONES)]
        try:
            theirs = celery_crontab(*fields, app=_app(zone), nowfun=lambda: datetime.now(UTC))
        except ValueError:  # e.g. day 30 of February only: rejected by both
            continue
        start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(40 * 365 * 86400))
        produced += 1
        yield zone, fields, theirs, start


def _sequence(step, start: datetime) -> list[datetime]:
    out, when = [], start
    for _ in range(RUNS):
        when = step(when)
        out.append(when)
    return out


def test_converted_crontab_fires_when_celery_does():
    checked = both_days = 0
    for zone, fields, theirs, start in _cases():
        # (a crontab with a nowfun of its own is not converted: beat drives it in memory)
        plain = celery_crontab(*fields, app=_app(zone))
        ours = from_celery(plain, app_timezone=zone)
        assert isinstance(ours, crontab) and ours.timezone == zone
        expected = _sequence(lambda t, s=theirs: _celery_next(s, t), start)
        assert _sequence(ours.next_after, start) == expected, (zone, fields, start)
        checked += 1
        both_days += fields[2] != "*" and fields[3] != "*"
    assert checked == CASES
    assert both_days > CASES // 4  # the AND rule was exercised, not just '*' days


def test_parity_check_can_fail_with_the_or_rule():
    """Standard cron's OR rule gives different times: the comparison above would notice."""
    differing = compared = 0
    for zone, fields, theirs, start in _cases():
        minute, hour, dow, dom, month = (ours_field(v) for v in fields)
        if dow.startswith("*") or dom.startswith("*"):
            continue
        either = cron(f"{minute} {hour} {dom} {month} {dow}", timezone=zone)
        compared += 1
        expected = _sequence(lambda t, s=theirs: _celery_next(s, t), start)
        differing += _sequence(either.next_after, start) != expected
    assert compared > 30
    assert differing > compared * 0.8


def ours_field(value: object) -> str:
    """A celery field value in the text form our ``cron`` accepts."""
    if isinstance(value, (set, list)):
        return ",".join(str(v) for v in sorted(value))
    return str(value)


def test_friday_13th_and_rule():
    ours = crontab(minute=0, hour=0, day_of_week="fri", day_of_month=13)
    when = ours.next_after(datetime(2024, 1, 1, tzinfo=UTC))
    assert when == datetime(2024, 9, 13, tzinfo=UTC)
    theirs = celery_crontab(0, 0, day_of_week="fri", day_of_month=13, app=_app("UTC"))
    assert _celery_next(theirs, datetime(2024, 1, 1, tzinfo=UTC)) == when
