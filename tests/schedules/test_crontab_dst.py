"""DST behaviour of ``cron``/``crontab``, with cronsim as the oracle.

For a few hundred seeded random expressions per test, in five zones (Lord Howe shifts by 30
minutes; Sao Paulo's transitions, until 2019, were at midnight), starting shortly before a
real transition, our fire times must equal ``CronSim(expr, start)``'s.

Two cronsim quirks are tolerated, and only for jobs that follow elapsed time (the minute or
hour field starts with ``*``): (1) in Australia/Lord_Howe cronsim steps hours in real time
from a wall-clock hour start, so after a 30-minute shift it fires at ``:30`` instead of
``:00`` (``0 */6 * * *`` misses 06:00 on the transition day, ``*/30 0 * * *`` misses 00:00
the day after); (2) when a gap swallows midnight (Sao Paulo before 2019) cronsim starts the
day at the non-existent 00:00 and fires at 01:00 for an hour-0 job, or skips the whole day.
In those cases our times must equal a brute-force minute-by-minute reading of the rule
instead, so every case is checked against an oracle.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

from cronsim import CronSim

from celery_beatx.schedules import _cronfields as fields
from celery_beatx.schedules import cron, crontab

UTC = timezone.utc
ZONES = {
    "America/New_York": range(2021, 2027),
    "Europe/London": range(2021, 2027),
    "Australia/Lord_Howe": range(2021, 2027),
    "Europe/Berlin": range(2021, 2027),
    # Brazil abolished DST in 2019: use the years when it still had midnight transitions.
    "America/Sao_Paulo": range(2015, 2020),
}
QUIRKY_ZONES = {"Australia/Lord_Howe", "America/Sao_Paulo"}
CASES = 400
WINDOW = timedelta(hours=26)


@cache
def transitions(zone: str) -> tuple[datetime, ...]:
    """Every UTC offset change of ``zone`` in its years, to the second."""
    tz, years = ZoneInfo(zone), ZONES[zone]
    step, found = timedelta(hours=6), []
    when = datetime(years[0], 1, 1, tzinfo=UTC)
    end = datetime(years[-1] + 1, 1, 1, tzinfo=UTC)
    while when < end:
        if (when + step).astimezone(tz).utcoffset() != when.astimezone(tz).utcoffset():
            low, high = when, when + step
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == high.astimezone(tz).utcoffset():
                    high = middle
                else:
                    low = middle
            found.append(high.replace(microsecond=0))
        when += step
    assert len(found) >= 2 * (len(years) - 1)
    return tuple(found)


def _minute(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.2:
        return "*"
    if kind < 0.4:
        return f"*/{rng.choice([2, 5, 10, 15, 20, 30, 45])}"
    if kind < 0.6:
        return str(rng.choice([0, 15, 30, 45, rng.randrange(60)]))
    if kind < 0.75:
        return ",".join(map(str, sorted(rng.sample(range(60), rng.randint(2, 4)))))
    first = rng.randrange(50)
    last = rng.randrange(first + 1, 60)
    return f"{first}-{last}" if kind < 0.9 else f"{first}-{last}/{rng.randint(2, 20)}"


def _hour(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.25:
        return "*"
    if kind < 0.4:
        return f"*/{rng.choice([2, 3, 4, 6])}"
    if kind < 0.65:
        return str(rng.choice([0, 1, 2, 3, rng.randrange(24)]))
    if kind < 0.8:
        return ",".join(map(str, sorted(rng.sample(range(5), rng.randint(2, 3)))))
    first = rng.randrange(4)
    last = rng.randrange(first + 1, 6)
    return f"{first}-{last}" if kind < 0.92 else f"{first}-{last + 3}/{rng.randint(2, 3)}"


def _days(rng: random.Random, sunday_seven: bool) -> tuple[str, str, str]:
    dom = "*" if rng.random() < 0.7 else rng.choice(
        ["1-15", "*/2", "1,8,15,22,29", str(rng.randint(1, 28)), "20-31"])
    dows = ["0", "sun", "0,6", "1-5", "sat,sun", "*/2", "0-3", "SUN-WED"]
    dow = "*" if rng.random() < 0.6 else rng.choice(dows + ["7"] * sunday_seven)
    month = "*" if rng.random() < 0.85 else rng.choice(["3,4,10,11", "*/2", "mar-nov", "4"])
    return dom, month, dow


def _start(rng: random.Random, zone: str) -> tuple[datetime, datetime]:
    moment = rng.choice(transitions(zone))
    return moment, moment - timedelta(minutes=rng.randint(1, 8 * 60))


def _follows_elapsed_time(expr: str) -> bool:
    minute, hour = expr.split()[:2]
    return minute.startswith("*") or hour.startswith("*")


def _runs(step, start: datetime, until: datetime) -> list[datetime]:
    """Fire times from ``start``: at least 5, and all up to ``until`` (at most 400)."""
    out: list[datetime] = []
    when = start
    while len(out) < 5 or (out[-1] <= until and len(out) < 400):
        when = step(when)
        if when is None:
            break
        out.append(when.astimezone(UTC))
    return out


def _cronsim_runs(expr: str, zone: str, start: datetime, count: int) -> list[datetime]:
    sim = CronSim(expr, start.astimezone(ZoneInfo(zone)))
    return [next(sim).astimezone(UTC) for _ in range(count)]


def _wall_matches(expr: str, wall: datetime) -> bool:
    minute, hour, dom, month, dow = expr.split()
    sets = [fields.parse_field(kind, text)[1] for kind, text in (
        (fields.MINUTE, minute), (fields.HOUR, hour), (fields.DAY_OF_MONTH, dom),
        (fields.MONTH_OF_YEAR, month), (fields.CRON_DAY_OF_WEEK, dow))]
    if wall.minute not in sets[0] or wall.hour not in sets[1] or wall.month not in sets[3]:
        return False
    by_date, by_weekday = wall.day in sets[2], (wall.weekday() + 1) % 7 in sets[4]
    if dom.startswith("*") or dow.startswith("*"):
        return by_date and by_weekday
    return by_date or by_weekday


def _brute_force(expr: str, zone: str, after: datetime, until: datetime) -> list[datetime]:
    """The rule read literally, one minute at a time, for fire times in ``(after, until]``.

    Elapsed-time jobs fire at every real minute whose local wall time matches. Fixed-time
    jobs walk the wall clock: an ambiguous match fires on its first pass, a non-existent
    one at the first real minute after the gap.
    """
    tz, out = ZoneInfo(zone), []
    minute = timedelta(minutes=1)

    def real(wall: datetime) -> bool:
        return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) \
            == wall

    if _follows_elapsed_time(expr):
        when = after.replace(second=0, microsecond=0) + minute
        while when <= until:
            if _wall_matches(expr, when.astimezone(tz).replace(tzinfo=None)):
                out.append(when)
            when += minute
        return out
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) + minute
    while wall <= until.astimezone(tz).replace(tzinfo=None) + timedelta(hours=3):
        if _wall_matches(expr, wall):
            while not real(wall):
                wall += minute
            instant = wall.replace(tzinfo=tz).astimezone(UTC)
            if after < instant <= until and (not out or instant > out[-1]):
                out.append(instant)
        wall += minute
    return out


def _check(expr: str, schedule, zone: str, moment: datetime, start: datetime,
           stats: dict[str, int]) -> None:
    until = moment + WINDOW
    ours = _runs(schedule.next_after, start, until)
    theirs = _cronsim_runs(expr, zone, start, len(ours))
    if ours == theirs:
        stats["agree"] += 1
    else:
        assert zone in QUIRKY_ZONES and _follows_elapsed_time(expr), (expr, zone, start)
        stats["quirk"] += 1
        until = min(until, ours[-1])  # ``_runs`` stops at 400 runs
        in_window = [t for t in ours if t <= until]
        assert in_window == _brute_force(expr, zone, start, until), (expr, zone, start)
    if any(abs(t - moment) <= timedelta(hours=2) for t in ours):
        stats["near_transition"] += 1


def test_cron_matches_cronsim_across_dst():
    rng = random.Random(1729)
    stats = {"agree": 0, "quirk": 0, "near_transition": 0}
    zones = list(ZONES)
    for case in range(CASES):
        zone = zones[case % len(zones)]
        dom, month, dow = _days(rng, sunday_seven=True)
        expr = f"{_minute(rng)} {_hour(rng)} {dom} {month} {dow}"
        moment, start = _start(rng, zone)
        _check(expr, cron(expr, timezone=zone), zone, moment, start, stats)
    assert stats["agree"] >= CASES * 0.85, stats
    assert stats["near_transition"] >= CASES * 0.5, stats


def test_crontab_matches_cronsim_across_dst_when_day_rules_agree():
    rng = random.Random(314)
    stats = {"agree": 0, "quirk": 0, "near_transition": 0}
    zones = list(ZONES)
    for case in range(CASES):
        zone = zones[case % len(zones)]
        dom, month, dow = _days(rng, sunday_seven=False)
        if not (dom.startswith("*") or dow.startswith("*")):
            dow = "*"  # both restricted: celery's AND and cron's OR differ by design
        minute, hour = _minute(rng), _hour(rng)
        schedule = crontab(minute, hour, dow, dom, month, timezone=zone)
        moment, start = _start(rng, zone)
        _check(f"{minute} {hour} {dom} {month} {dow}", schedule, zone, moment, start, stats)
    assert stats["agree"] >= CASES * 0.85, stats
    assert stats["near_transition"] >= CASES * 0.5, stats


def test_brute_force_oracle_agrees_outside_the_quirks():
    """The brute-force reading used above agrees with cronsim where cronsim is sound."""
    rng = random.Random(99)
    for case in range(60):
        zone = ("America/New_York", "Europe/Berlin", "Europe/London")[case % 3]
        dom, month, dow = _days(rng, sunday_seven=True)
        expr = f"{_minute(rng)} {_hour(rng)} {dom} {month} {dow}"
        moment, start = _start(rng, zone)
        until = moment + timedelta(hours=6)
        expected = _brute_force(expr, zone, start, until)
        if expected:
            assert _cronsim_runs(expr, zone, start, len(expected)) == expected, (expr, zone)


def _local(schedule, start: datetime, count: int, zone: str) -> list[str]:
    tz, out, when = ZoneInfo(zone), [], start
    for _ in range(count):
        when = schedule.next_after(when)
        out.append(when.astimezone(tz).strftime("%m-%d %H:%M%z"))
    return out


def test_fixed_time_job_runs_after_a_skipped_hour_and_once_in_a_repeated_one():
    zone = "America/New_York"
    job = cron("30 2 * * *", timezone=zone)
    start = datetime(2024, 3, 9, 12, tzinfo=UTC)
    assert _local(job, start, 2, zone) == ["03-10 03:00-0400", "03-11 02:30-0400"]
    job = crontab(30, 1, timezone=zone)
    start = datetime(2024, 11, 2, 12, tzinfo=UTC)
    assert _local(job, start, 2, zone) == ["11-03 01:30-0400", "11-04 01:30-0500"]


def test_wildcard_job_follows_elapsed_time():
    zone = "America/New_York"
    job = cron("*/30 * * * *", timezone=zone)
    start = datetime(2024, 11, 3, 4, 50, tzinfo=UTC)  # 00:50 EDT
    assert _local(job, start, 5, zone) == [
        "11-03 01:00-0400", "11-03 01:30-0400", "11-03 01:00-0500", "11-03 01:30-0500",
        "11-03 02:00-0500"]
    job = cron("*/30 * * * *", timezone=zone)
    start = datetime(2024, 3, 10, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert _local(job, start, 3, zone) == ["03-10 01:30-0500", "03-10 03:00-0400",
                                           "03-10 03:30-0400"]


def test_lord_howe_half_hour_shift():
    zone = "Australia/Lord_Howe"
    # Spring forward 02:00 -> 02:30: a fixed 02:00 job runs at 02:30, hourly jobs skip 02:00.
    start = datetime(2024, 10, 5, 12, tzinfo=UTC)
    assert _local(cron("0 2 * * *", timezone=zone), start, 2, zone) == [
        "10-06 02:30+1100", "10-07 02:00+1100"]
    assert _local(cron("0 */1 * * *", timezone=zone), start, 4, zone)[1:4] == [
        "10-06 00:00+1030", "10-06 01:00+1030", "10-06 03:00+1100"]
    # Fall back 02:00 -> 01:30: 01:45 happens twice; elapsed-time jobs run in both passes.
    start = datetime(2025, 4, 5, 14, tzinfo=UTC)  # 01:00 +11
    assert _local(cron("45 * * * *", timezone=zone), start, 3, zone) == [
        "04-06 01:45+1100", "04-06 01:45+1030", "04-06 02:45+1030"]
    assert _local(cron("45 1 * * *", timezone=zone), start, 2, zone) == [
        "04-06 01:45+1100", "04-07 01:45+1030"]


def test_starting_in_the_second_pass_of_a_fold():
    zone = "America/New_York"
    second_pass = datetime(2024, 11, 3, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert _local(cron("30 1 * * *", timezone=zone), second_pass, 1, zone) == [
        "11-04 01:30-0500"]
    assert _local(cron("*/30 1 * * *", timezone=zone), second_pass, 1, zone) == [
        "11-03 01:30-0500"]
    first_pass = datetime(2024, 11, 3, 5, 50, tzinfo=UTC)  # 01:50 EDT
    assert _local(cron("*/20 1 * * *", timezone=zone), first_pass, 3, zone) == [
        "11-03 01:00-0500", "11-03 01:20-0500", "11-03 01:40-0500"]
