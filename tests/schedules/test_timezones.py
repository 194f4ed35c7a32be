"""TimezoneUtils: every function of the seed, with a fixed ``now``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from celery_beatx.errors import InvalidSchedule
from celery_beatx.timezones import TimezoneInfo, TimezoneUtils

UTC = timezone.utc
WINTER = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
SUMMER = datetime(2024, 7, 15, 12, 0, tzinfo=UTC)


def test_detect_system_timezone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert TimezoneUtils.detect_system_timezone() == "Asia/Tokyo"
    monkeypatch.setenv("TZ", ":Europe/Paris")
    assert TimezoneUtils.detect_system_timezone() == "Europe/Paris"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert TimezoneUtils.is_valid_timezone(TimezoneUtils.detect_system_timezone())
    monkeypatch.delenv("TZ")
    assert TimezoneUtils.is_valid_timezone(TimezoneUtils.detect_system_timezone())


def test_validation_and_listing():
    assert TimezoneUtils.is_valid_timezone("America/New_York")
    assert TimezoneUtils.is_valid_timezone("UTC")
    assert not TimezoneUtils.is_valid_timezone("Invalid/Timezone")
    assert not TimezoneUtils.is_valid_timezone("")
    assert not TimezoneUtils.is_valid_timezone(None)  # type: ignore[arg-type]
    zones = TimezoneUtils.list_all_timezones()
    assert len(zones) > 500 and zones == sorted(zones)
    assert {"America/New_York", "Europe/London", "Asia/Tokyo", "UTC"} <= set(zones)
    america = TimezoneUtils.search_timezones("america")
    assert "America/New_York" in america and "America/Los_Angeles" in america
    assert all("america" in z.lower() for z in america)
    assert TimezoneUtils.search_timezones("LONDON") == ["Europe/London"]
    assert TimezoneUtils.search_timezones("no such zone") == []


def test_current_time_in_zones():
    times = TimezoneUtils.current_time_in_zones(
        ["America/New_York", "Europe/London", "Asia/Tokyo"], now=WINTER)
    assert times["America/New_York"] == WINTER and times["Asia/Tokyo"] == WINTER
    assert times["America/New_York"].hour == 7
    assert times["Europe/London"].hour == 12
    assert times["Asia/Tokyo"].hour == 21
    with pytest.raises(InvalidSchedule) as info:
        TimezoneUtils.current_time_in_zones(["Mars/Base"], now=WINTER)
    assert info.value.field == "timezone"


def test_dst_and_offsets():
    assert not TimezoneUtils.is_dst_active("America/New_York", WINTER)
    assert TimezoneUtils.is_dst_active("America/New_York", SUMMER)
    assert TimezoneUtils.is_dst_active("Australia/Sydney", WINTER)
    assert not TimezoneUtils.is_dst_active("Australia/Sydney", SUMMER)
    assert not TimezoneUtils.is_dst_active("Asia/Tokyo", SUMMER)
    # tzdata models Irish winter time as "negative DST"; summer is still the DST side
    assert not TimezoneUtils.is_dst_active("Europe/Dublin", WINTER)
    assert TimezoneUtils.is_dst_active("Europe/Dublin", SUMMER)
    assert TimezoneUtils.get_utc_offset("America/New_York", WINTER) == -5 * 3600
    assert TimezoneUtils.get_utc_offset("America/New_York", SUMMER) == -4 * 3600
    assert TimezoneUtils.get_utc_offset("Asia/Tokyo") == 9 * 3600
    assert TimezoneUtils.get_utc_offset("Asia/Kolkata", WINTER) == 19800
    with pytest.raises(InvalidSchedule):
        TimezoneUtils.is_dst_active("Nowhere/Land", WINTER)


def test_timezone_info():
    info = TimezoneUtils.get_timezone_info("Europe/London", WINTER)
    assert info == TimezoneInfo("Europe/London", 0, 0.0, False, WINTER, "GMT")
    assert str(info) == "Europe/London (UTC+0.0h, GMT, DST: No): 2024-01-15 12:00:00 GMT"
    summer = TimezoneUtils.get_timezone_info("America/New_York", SUMMER)
    assert (summer.utc_offset_seconds, summer.utc_offset_hours, summer.is_dst,
            summer.abbreviation) == (-14400, -4.0, True, "EDT")
    assert summer.current_time.hour == 8
    assert str(TimezoneUtils.get_timezone_info("Asia/Kolkata", WINTER)).startswith(
        "Asia/Kolkata (UTC+5.5h, IST, DST: No): 2024-01-15 17:30:00")


def test_convert_between_timezones():
    converted = TimezoneUtils.convert_between_timezones(WINTER, "America/New_York",
                                                        "Asia/Tokyo")
    assert converted == WINTER and converted.tzinfo == ZoneInfo("Asia/Tokyo")
    naive = TimezoneUtils.convert_between_timezones(datetime(2024, 1, 1, 9), "America/New_York",
                                                    "Asia/Tokyo")
    assert naive.replace(tzinfo=None) == datetime(2024, 1, 1, 23)
    with pytest.raises(InvalidSchedule):
        TimezoneUtils.convert_between_timezones(WINTER, "Bad/Zone", "UTC")
    assert TimezoneUtils.format_in_timezone(WINTER, "Asia/Tokyo") == \
        "2024-01-15 21:00:00 Asia/Tokyo"


def test_common_abbreviations():
    abbreviations = TimezoneUtils.get_common_timezone_abbreviations()
    assert abbreviations["EST"] == "America/New_York"
    assert abbreviations["PST"] == "America/Los_Angeles"
    assert abbreviations["JST"] == "Asia/Tokyo"
    assert all(TimezoneUtils.is_valid_timezone(zone) for zone in abbreviations.values())
    abbreviations["EST"] = "changed"
    assert TimezoneUtils.get_common_timezone_abbreviations()["EST"] == "America/New_York"


def test_time_until_next_occurrence():
    now = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)  # 08:00 in New York
    assert TimezoneUtils.time_until_next_occurrence(9, 0, "America/New_York", now) == \
        timedelta(hours=1)
    assert TimezoneUtils.time_until_next_occurrence(8, 0, "America/New_York", now) == \
        timedelta(days=1)  # exactly now: the next one is tomorrow
    assert TimezoneUtils.time_until_next_occurrence(7, 30, "America/New_York", now) == \
        timedelta(hours=23, minutes=30)
    # across the spring-forward night the wall-clock day is 23 hours long
    saturday = datetime(2024, 3, 9, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert TimezoneUtils.time_until_next_occurrence(9, 0, "America/New_York", saturday) == \
        timedelta(hours=23)
    # 02:30 does not exist on 2024-03-10: the first instant after the gap (03:00 EDT)
    assert TimezoneUtils.time_until_next_occurrence(2, 30, "America/New_York", saturday) == \
        timedelta(hours=17)


@pytest.mark.parametrize(("args", "field"), [
    ((24, 0, "UTC"), "hour"),
    ((0, 60, "UTC"), "minute"),
    ((1.5, 0, "UTC"), "hour"),
    ((0, 0, "Bad/Zone"), "timezone"),
])
def test_time_until_next_occurrence_bad_input(args, field):
    with pytest.raises(InvalidSchedule) as info:
        TimezoneUtils.time_until_next_occurrence(*args, now=WINTER)
    assert info.value.field == field


def test_naive_now_is_rejected():
    with pytest.raises(InvalidSchedule) as info:
        TimezoneUtils.get_utc_offset("UTC", datetime(2024, 1, 1))
    assert info.value.field == "at"
