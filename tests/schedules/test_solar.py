"""Sanity checks of solar schedules against published sun times."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone

from celery_beatx.schedules import Schedule, schedule_from_dict, solar
from celery_beatx.schedules.solar import EVENTS

UTC = timezone.utc
LONDON = (51.5074, -0.1278)
TROMSO = (69.6496, 18.9560)


def _close(when: datetime | None, expected: datetime, minutes: float = 2) -> bool:
    return when is not None and abs(when - expected) <= timedelta(minutes=minutes)


def test_london_midsummer_sunrise_and_sunset():
    # NOAA solar calculator, 2024-06-21: sunrise 04:43 BST, sunset 21:21 BST.
    day = datetime(2024, 6, 21, tzinfo=UTC)
    assert _close(solar("sunrise", *LONDON).next_after(day),
                  datetime(2024, 6, 21, 3, 43, tzinfo=UTC))
    assert _close(solar("sunset", *LONDON).next_after(day),
                  datetime(2024, 6, 21, 20, 21, tzinfo=UTC))


def test_next_after_is_strictly_later_and_daily():
    sunrise = solar("sunrise", *LONDON)
    first = sunrise.next_after(datetime(2024, 3, 1, tzinfo=UTC))
    second = sunrise.next_after(first)
    assert first.date() == datetime(2024, 3, 1).date()
    assert timedelta(hours=23, minutes=55) < second - first < timedelta(hours=24)
    assert sunrise.next_after(first - timedelta(seconds=1)) == first


def test_polar_day_skips_to_the_first_sunrise():
    # Tromsø has midnight sun from about May 18 to July 26: no sunrise in June.
    when = solar("sunrise", *TROMSO).next_after(datetime(2024, 6, 15, tzinfo=UTC))
    assert when is not None
    assert datetime(2024, 7, 24, tzinfo=UTC) < when < datetime(2024, 7, 29, tzinfo=UTC)


def test_polar_sunrise_once_a_year_and_none_past_the_search_horizon(monkeypatch):
    # At the north pole the sun rises once a year, around the March equinox.
    pole = solar("sunrise", 90, 0)
    when = pole.next_after(datetime(2024, 5, 1, tzinfo=UTC))
    assert when is not None and datetime(2025, 3, 10, tzinfo=UTC) < when < \
        datetime(2025, 3, 25, tzinfo=UTC)
    # (the package attribute ``solar`` is the class; the module is looked up by name)
    monkeypatch.setattr(importlib.import_module("celery_beatx.schedules.solar"),
                        "SEARCH_DAYS", 20)
    assert solar("sunrise", *TROMSO).next_after(datetime(2024, 6, 15, tzinfo=UTC)) is None


def test_every_event_computes_and_orders_within_a_day():
    day = datetime(2024, 3, 20, tzinfo=UTC)
    times = {event: solar(event, *LONDON).next_after(day) for event in EVENTS}
    assert all(when is not None and day < when < day + timedelta(days=1)
               for when in times.values())
    morning = ["dawn_astronomical", "dawn_nautical", "blue_hour_morning", "dawn_civil",
               "golden_hour_morning", "sunrise", "solar_noon"]
    evening = ["solar_noon", "golden_hour_evening", "sunset", "blue_hour_evening",
               "dusk_civil", "dusk_nautical", "dusk_astronomical"]
    assert [times[e] for e in morning] == sorted(times[e] for e in morning)
    assert [times[e] for e in evening] == sorted(times[e] for e in evening)
    # PhotoPills' definition: blue hour morning starts at -6 degrees, i.e. civil dawn.
    assert _close(times["blue_hour_morning"], times["dawn_civil"], minutes=1)


def test_far_east_and_west_longitudes_keep_one_event_per_day():
    for longitude in (179.9, -179.9):
        sunset = solar("sunset", 0.0, longitude)
        when = datetime(2024, 1, 1, tzinfo=UTC)
        gaps = []
        for _ in range(20):
            following = sunset.next_after(when)
            gaps.append(following - when)
            when = following
        assert all(timedelta(hours=23, minutes=50) < gap < timedelta(hours=24, minutes=10)
                   for gap in gaps[1:])


def test_round_trip_and_seed_spelling():
    tokyo = Schedule.solar("sunrise", 35.6762, 139.6503)
    assert tokyo == solar("sunrise", 35.6762, 139.6503, elevation=0)
    assert schedule_from_dict(tokyo.to_dict()) == tokyo
    assert tokyo.to_dict() == {"type": "solar", "event": "sunrise", "latitude": 35.6762,
                               "longitude": 139.6503, "elevation": 0.0}


# Published times (NOAA Solar Calculator, gml.noaa.gov/grad/solcalc; local civil time,
# rounded to the minute), for cities on three continents at both solstices.
PUBLISHED = [
    # city, lat, lon, zone, date, sunrise, sunset
    ("New York", 40.7128, -74.0060, "America/New_York", (2024, 12, 21), (7, 17), (16, 32)),
    ("Tokyo", 35.6762, 139.6503, "Asia/Tokyo", (2024, 6, 21), (4, 25), (19, 0)),
    ("Sydney", -33.8688, 151.2093, "Australia/Sydney", (2024, 6, 21), (7, 0), (16, 54)),
]


def test_published_sunrise_and_sunset_within_two_minutes():
    from zoneinfo import ZoneInfo

    for city, lat, lon, zone, ymd, rise, sets in PUBLISHED:
        tz = ZoneInfo(zone)
        midnight = datetime(*ymd, tzinfo=tz)
        for event, (hour, minute) in (("sunrise", rise), ("sunset", sets)):
            expected = datetime(*ymd, hour, minute, tzinfo=tz).astimezone(UTC)
            got = solar(event, lat, lon).next_after(midnight.astimezone(UTC))
            assert _close(got, expected), (city, event, got, expected)


def test_polar_night_skips_to_the_sun_s_return():
    # Tromsø's polar night: no sunrise from late November; the sun returns around 15 January.
    when = solar("sunrise", *TROMSO).next_after(datetime(2024, 12, 10, tzinfo=UTC))
    assert datetime(2025, 1, 13, tzinfo=UTC) < when < datetime(2025, 1, 18, tzinfo=UTC)
