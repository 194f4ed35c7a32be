"""What a task definition accepts, refuses and stores: pure, no database, no broker.

Every refusal here is an input that was accepted before and then made a send fail (or
changed what it did) at beat time, or made the database raise a raw driver error.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from kombu import Exchange, Queue

from celery_beatx import InvalidSchedule, every
from celery_beatx.definitions import DEFAULTS, validate_fields

UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BIG = "x" * (300 * 1024)


def full(**fields):
    """A complete definition (as ``add`` validates it) with ``fields`` changed."""
    spec = dict(DEFAULTS, name="t", task="proj.t", schedule=every(seconds=10), enabled=True)
    spec.update(fields)
    return spec


@pytest.mark.parametrize("fields, field, message", [
    # headers: a mapping of str keys Celery does not set itself, JSON values
    ({"headers": "x"}, "headers", "must be a mapping"),
    ({"headers": {1: "a"}}, "headers", "key 1 is not a string"),
    ({"headers": {"id": "fixed"}}, "headers", "'id' is set by Celery"),
    ({"headers": {"task": "other.task"}}, "headers", "'task' is set by Celery"),
    ({"headers": {"beatx_run": {}}}, "headers", "set by celery-beatx"),
    ({"headers": {"h": datetime(2026, 1, 1, tzinfo=UTC)}}, "headers", "cannot be stored"),
    # options: apply_async options Celery understands, JSON values
    ({"options": {"headers": "x"}}, "options", "use the task's 'headers' field"),
    ({"options": {"task_id": "fixed"}}, "options", "deterministic id"),
    ({"options": {"queue": "q"}}, "options", "use the task's 'queue' field"),
    ({"options": {"priority": 3}}, "options", "use the task's 'priority' field"),
    ({"options": {"expires": 30}}, "options", "use the task's 'expires' field"),
    ({"options": {"kwargs": {}}}, "options", "use the task's 'kwargs' field"),
    ({"options": {"group": "g"}}, "options", "use the task's 'group' field"),
    ({"options": {"catchup": "all"}}, "options", "use the task's 'catchup' field"),
    ({"options": {"eta": "2026-01-01T00:00:00+00:00"}}, "options", "countdown"),
    ({"options": {"colour": "red"}}, "options", "'colour' is not an apply_async option"),
    ({"options": {1: "a"}}, "options", "key 1 is not a string"),
    ({"options": {"countdown": -1}}, "options", "must be >= 0"),
    ({"options": {"countdown": "soon"}}, "options", "not a number"),
    ({"options": {"time_limit": 0}}, "options", "must be > 0"),
    ({"options": {"retry": "yes"}}, "options", "True or False"),
    ({"options": {"retry_policy": {"max_retries": -1}}}, "options", "max_retries"),
    ({"options": {"retry_policy": {"backoff": 2}}}, "options", "'backoff'"),
    ({"options": {"serializer": "jsonn"}}, "options", "serializer kombu knows"),
    ({"options": {"compression": "zipp"}}, "options", "compression method"),
    ({"options": {"exchange_type": "round-robin"}}, "options", "not one of"),
    ({"options": {"delivery_mode": 3}}, "options", "not one of"),
    ({"options": {"routing_key": 5}}, "options", "must be a string"),
    ({"options": {"link": "proj.next"}}, "options", "not a task signature"),
    ({"options": {"shadow": object()}}, "options", "must be a string"),
    # expires: seconds > 0, or an aware time in the future
    ({"expires": 0}, "expires", "must be > 0"),
    ({"expires": -5}, "expires", "must be > 0"),
    ({"expires": datetime(2026, 3, 2)}, "expires", "naive"),  # noqa: DTZ001
    ({"expires": NOW - timedelta(seconds=1)}, "expires", "not in the future"),
    ({"expires": NOW}, "expires", "not in the future"),
    ({"expires": "tomorrow"}, "expires", "not an ISO datetime"),
    ({"expires": "2026-03-02T00:00:00"}, "expires", "naive"),
    # kwargs are passed as **kwargs: their keys are strings
    ({"kwargs": {1: "a"}}, "kwargs", "key 1 is not a string"),
    ({"kwargs": {"s": {1, 2}}}, "kwargs", "cannot be stored"),
    ({"kwargs": {"t": {"__type__": "frobnicator", "__value__": 1}}}, "kwargs",
     "cannot be decoded"),
    ({"args": [object()]}, "args", "cannot be stored"),
    # ranges the columns and beat can hold
    ({"priority": 256}, "priority", "from 0 to 255"),
    ({"priority": -1}, "priority", "from 0 to 255"),
    ({"priority": True}, "priority", "from 0 to 255"),
    ({"catchup_limit": 10_001}, "catchup_limit", "from 1 to 10000"),
    ({"catchup_limit": 2**40}, "catchup_limit", "from 1 to 10000"),
    ({"catchup_limit": 0}, "catchup_limit", "from 1 to 10000"),
    ({"jitter": 86_401}, "jitter", "<= 86400"),
    ({"jitter": -1}, "jitter", ">= 0"),
    # sizes: one JSON field at most 256 KiB, a description at most 10,000 characters
    ({"args": [BIG]}, "args", "the limit is 262,144 bytes"),
    ({"kwargs": {"blob": BIG}}, "kwargs", "the limit is 262,144 bytes"),
    ({"headers": {"blob": BIG}}, "headers", "the limit is 262,144 bytes"),
    ({"tags": [f"tag{i}" for i in range(40_000)]}, "tags", "the limit is"),
    ({"description": "d" * 10_001}, "description", "longer than 10000"),
    # names compare byte for byte everywhere: whitespace around them is refused
    ({"name": " report"}, "name", "whitespace"),
    ({"name": "report "}, "name", "whitespace"),
    ({"name": "report\n"}, "name", "whitespace"),
    ({"group": "reports "}, "group", "whitespace"),
    ({"tags": [" a"]}, "tags", "whitespace"),
    ({"task": "proj.t "}, "task", "whitespace"),
])
def test_refused_naming_field_and_value(fields, field, message):
    with pytest.raises(InvalidSchedule, match=message) as info:
        validate_fields(full(**fields), "UTC", NOW)
    assert info.value.field == field or info.value.field.startswith(field)


@pytest.mark.parametrize("seconds", [0.05, 1e-7, 0.0999])
def test_interval_shorter_than_the_minimum_is_refused(seconds):
    with pytest.raises(InvalidSchedule, match="shorter than the minimum 0.1s"):
        every(seconds=seconds)
    with pytest.raises(InvalidSchedule, match="minimum"):
        validate_fields(full(schedule={"type": "interval", "seconds": seconds}))
    from celery.schedules import schedule as celery_schedule

    with pytest.raises(InvalidSchedule, match="minimum|not positive"):
        validate_fields(full(schedule=celery_schedule(timedelta(seconds=seconds))))
    assert every(seconds=0.1).seconds == 0.1


def test_celery_values_are_stored_with_kombus_json_encoding():
    when = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    out = validate_fields(full(args=(when, Decimal("1.10")),
                               kwargs={"day": date(2026, 5, 1), "at": time(8, 30),
                                       "id": ident, "raw": b"\x00\xff", "nested": (1, [2])}))
    assert out["args"] == [{"__type__": "datetime", "__value__": "2026-05-01T08:30:00+00:00"},
                           {"__type__": "decimal", "__value__": "1.10"}]
    assert out["kwargs"]["id"] == {"__type__": "uuid", "__value__": {"hex": ident.hex}}
    assert out["kwargs"]["raw"] == {"__type__": "base64", "__value__": "AP8="}
    assert out["kwargs"]["nested"] == [1, [2]]  # JSON has lists, as on the wire


def test_expires_datetime_is_stored_as_an_absolute_time():
    when = datetime(2026, 3, 2, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    out = validate_fields({"expires": when}, "UTC", NOW)
    assert out["expires"] == {"__type__": "datetime", "__value__": "2026-03-02T12:00:00+00:00"}
    # the stored form (as an export holds it) and ISO text are accepted too
    assert validate_fields({"expires": out["expires"]}, "UTC", NOW) == out
    assert validate_fields({"expires": "2026-03-02T12:00:00Z"}, "UTC", NOW) == out
    assert validate_fields({"expires": timedelta(minutes=5)})["expires"] == 300.0


def test_a_kombu_queue_keeps_its_exchange_and_routing_key():
    queue = Queue("reports", Exchange("work", type="topic"), routing_key="reports.daily")
    out = validate_fields(full(queue=queue, options={"countdown": 5}))
    assert out["queue"] == "reports"
    assert out["options"] == {"countdown": 5, "exchange": "work", "exchange_type": "topic",
                              "routing_key": "reports.daily"}
    # a plain Queue on the default exchange routes by its name: nothing to add
    plain = validate_fields(full(queue=Queue("reports")))
    assert plain["queue"] == "reports" and plain["options"] == {}
    # options given explicitly win over the Queue's
    mixed = validate_fields(full(queue=queue, options={"routing_key": "reports.weekly"}))
    assert mixed["options"]["routing_key"] == "reports.weekly"
    # a kombu.Exchange given as the exchange option is its name and type
    ex = validate_fields(full(options={"exchange": Exchange("fan", type="fanout")}))
    assert ex["options"] == {"exchange": "fan", "exchange_type": "fanout"}


def test_send_options_celery_understands_are_accepted():
    options = {"countdown": 2, "retry": False, "exchange": "ex", "routing_key": "rk",
               "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.2,
                                "interval_max": 1},
               "serializer": "json", "compression": "zlib", "delivery_mode": "persistent",
               "time_limit": 60, "soft_time_limit": 50, "shadow": "nightly",
               "ignore_result": True, "link": {"task": "proj.next", "args": [1]},
               "reply_to": "replies", "MessageGroupId": "g"}
    assert validate_fields(full(options=options))["options"] == options


def test_config_entry_extra_keys_go_to_our_fields_or_are_ignored(caplog):
    import logging

    from celery_beatx.definitions import config_entry_fields

    entry = {"task": "proj.t", "schedule": 10.0, "description": "nightly report",
             "group": "reports", "relative": False, "owner": "ops", "options": {
                 "queue": "q", "expires": 30, "routing_key": "rk"}}
    with caplog.at_level(logging.DEBUG, logger="celery_beatx.definitions"):
        fields = config_entry_fields(entry, "nightly")
    assert fields["description"] == "nightly report" and fields["group"] == "reports"
    assert fields["queue"] == "q" and fields["expires"] == 30
    assert fields["options"] == {"routing_key": "rk"}
    assert "owner" not in fields and "relative" not in fields
    assert "'owner' is not used" in caplog.text
    validate_fields(dict(DEFAULTS, name="nightly", enabled=True, **fields))


@pytest.mark.parametrize("given, message", [
    ({"type": "custom", "name": "fn", "params": {"m": {1: "x"}}}, "key 1 is not a string"),
    ({"type": "any_of", "schedules": ({"type": "interval", "seconds": 5},)}, "is not a list"),
])
def test_a_schedule_dict_that_json_would_change_is_refused_as_given(given, message):
    """Equal schedule dicts share one parsed schedule, but a dict that only JSON's
    conversion would make valid (an integer key, a tuple) is still refused."""
    from celery_beatx.definitions import coerce_schedule

    for _ in range(2):  # also after its JSON twin was parsed and cached
        with pytest.raises(InvalidSchedule, match=message):
            coerce_schedule(given)
        twin = {"type": "custom", "name": "fn", "params": {"m": {"1": "x"}}} \
            if given["type"] == "custom" else \
            {"type": "any_of", "schedules": [{"type": "interval", "seconds": 5}]}
        assert coerce_schedule(twin) == coerce_schedule(dict(twin))


@pytest.mark.parametrize("given", [
    {"type": "interval", "seconds": 90},
    {"type": "crontab", "minute": "0", "hour": "3"},
    {"type": "any_of", "schedules": [{"type": "crontab", "minute": "*/5"},
                                     {"type": "interval", "seconds": 7200}]},
])
def test_a_schedule_dict_is_stored_in_its_full_form_and_each_caller_gets_its_own(given):
    """The stored form of a schedule dict (an import brings each distinct one to it once)
    is its schedule's ``to_dict()``, and changing the dict one call got changes no other."""
    from celery_beatx.definitions import coerce_schedule, stored_schedule

    expected = coerce_schedule(given).to_dict()
    first = validate_fields({"schedule": dict(given)})["schedule"]
    assert first == expected
    first["type"] = "changed by the caller"
    first.pop("schedules", None)
    assert stored_schedule(dict(given)) == expected
    assert validate_fields({"schedule": given})["schedule"] == expected
    with pytest.raises(InvalidSchedule, match="is not a list"):  # JSON would make it one
        stored_schedule({"type": "any_of", "schedules": ({"type": "interval", "seconds": 5},)})
