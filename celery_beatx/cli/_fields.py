"""The task-field options ``add`` and ``update`` share, and how their text becomes values.

Malformed text is a usage error naming the option (``--args is not valid JSON: ...``); a
well-formed value the library refuses is reported with the library's message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from ._core import usage

#: ``--clear FIELD`` choices and the value each is reset to.
CLEARABLE = {"args": [], "kwargs": {}, "queue": None, "priority": None, "expires": None,
             "headers": {}, "options": {}, "group": None, "tags": [], "depends_on": [],
             "retry": None, "alerts": None, "calendar": None, "jitter": 0.0,
             "description": ""}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def duration(text: str, option: str) -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1.5h"``, ``"2d"`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise usage(f"{option} {text!r} is not a duration (seconds, or a number with s, m, h "
                    "or d: 30, 30s, 5m, 1.5h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def json_value(text: str, option: str, kind: type | None = None) -> Any:
    """Parse ``text`` as JSON for ``option``; ``kind`` (list or dict) is required."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise usage(f"{option} is not valid JSON ({exc}): {text[:60]!r}") from None
    if kind is not None and not isinstance(value, kind):
        noun = "a JSON list, e.g. '[1, \"a\"]'" if kind is list else \
            "a JSON object, e.g. '{\"key\": 1}'"
        raise usage(f"{option} must be {noun}; got {type(value).__name__} {text[:60]!r}")
    return value


def mapping(text: str, option: str) -> dict[str, Any]:
    """A JSON object, or ``key=value[,key=value...]`` (values read as JSON when they are,
    else as strings): ``--retry max_retries=5,delay=30``."""
    if text.strip().startswith("{"):
        return json_value(text, option, dict)  # type: ignore[no-any-return]
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise usage(f"{option} {text!r} is neither a JSON object nor key=value pairs "
                        "separated by commas")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.strip()
        out[key.strip()] = value
    return out


def instant(text: str, option: str, zone: str) -> datetime:
    """An ISO 8601 time; without an offset it is read in ``zone``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise usage(f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-05-01T09:00, "
                    "2026-05-01T09:00+02:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value


def zone_name(text: str | None, option: str = "--timezone") -> str | None:
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except Exception:
        raise usage(f"{option} {text!r} is not an IANA time zone (e.g. Europe/Paris, "
                    "America/New_York, UTC)") from None
    return text


def schedule_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--every``, ``--cron``, ``--solar``, ``--once``, ``--schedule-json``, ``--timezone``."""
    options = [
        click.option("--every", help="Run every DURATION (seconds, or 30s, 5m, 1.5h, 2d). "
                                     "Example: --every 5m"),
        click.option("--cron", "cron_expr", metavar="EXPR",
                     help='A 5-field cron expression or an alias (@daily, @hourly...), read in '
                          '--timezone. Example: --cron "0 9 * * 1-5"'),
        click.option("--solar", nargs=3, type=(str, float, float), default=None,
                     metavar="EVENT LAT LON",
                     help="At a solar event seen from a place (sunrise, sunset, solar_noon, "
                          "dawn_civil, dusk_civil...). Example: --solar sunset 48.85 2.35"),
        click.option("--once", metavar="TIME",
                     help="Once, at an ISO 8601 time (without an offset: in --timezone); the "
                          "task is disabled after its run. Example: --once 2026-05-01T09:00"),
        click.option("--schedule-json", metavar="JSON",
                     help="Any schedule in its JSON form (as `show --json` prints it), e.g. "
                          "a composite. Example: --schedule-json "
                          "'{\"type\": \"interval\", \"seconds\": 60}'"),
        click.option("--timezone", metavar="ZONE",
                     help="IANA zone of --cron and of a --once time without offset (default: "
                          "the app's Celery timezone). Example: --timezone Europe/Berlin"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def field_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every other definition field."""
    options = [
        click.option("--args", "args_json", metavar="JSON",
                     help="Positional arguments, a JSON list. Example: --args '[1, \"a\"]'"),
        click.option("--kwargs", "kwargs_json", metavar="JSON",
                     help="Keyword arguments, a JSON object. Example: --kwargs "
                          "'{\"full\": true}'"),
        click.option("--queue", help="Queue to send to. Example: --queue reports"),
        click.option("--priority", type=int,
                     help="Message priority 0-255. Example: --priority 5"),
        click.option("--expires", metavar="SECONDS|TIME",
                     help="The message expires this many seconds after each send, or at an "
                          "ISO time. Example: --expires 300"),
        click.option("--headers", "headers_json", metavar="JSON",
                     help="Message headers, a JSON object. Example: --headers "
                          "'{\"team\": \"data\"}'"),
        click.option("--options", "options_json", metavar="JSON",
                     help="Other apply_async options, a JSON object. Example: --options "
                          "'{\"routing_key\": \"r\"}'"),
        click.option("--group", help="Group name (enable/disable a whole group at once). "
                                     "Example: --group billing"),
        click.option("--tag", "tags", multiple=True,
                     help="A tag; repeat for several. Example: --tag nightly --tag reports"),
        click.option("--depends-on", "depends_on", multiple=True, metavar="TASK",
                     help="Run only after this task's latest run succeeded; repeat for several."
                          " Example: --depends-on extract"),
        click.option("--retry", metavar="JSON|K=V,...",
                     help="Retry policy (max_retries, strategy fixed|exponential, delay, "
                          "max_delay, factor). Example: --retry max_retries=5,delay=30"),
        click.option("--alerts", metavar="JSON|K=V,...",
                     help="Alert rules (consecutive_failures, failure_rate, window, "
                          "slow_seconds, missed_schedule, stuck_seconds). Example: --alerts "
                          "consecutive_failures=3"),
        click.option("--calendar", metavar="JSON",
                     help="Only run inside this calendar (business_hours, weekdays, holidays, "
                          "blackouts, timezone). Example: --calendar '{\"business_hours\": "
                          "[\"09:00\", \"17:00\"], \"weekdays\": [0,1,2,3,4]}'"),
        click.option("--jitter", metavar="SECONDS", type=float,
                     help="Delay each run by a random 0..SECONDS. Example: --jitter 30"),
        click.option("--catchup", type=click.Choice(["skip", "once", "all"]),
                     help="What missed runs do: skip them, run once, or run all (up to "
                          "--catchup-limit). Example: --catchup all"),
        click.option("--catchup-limit", type=int,
                     help="Most missed runs sent with --catchup all. Example: "
                          "--catchup-limit 10"),
        click.option("--overlap", type=click.Choice(["allow", "skip", "buffer_one"]),
                     help="When the previous run is still running: send anyway, skip, or "
                          "keep one waiting. Example: --overlap skip"),
        click.option("--description", help="Free text. Example: --description "
                                           "'Nightly sales report'"),
        click.option("--strict", is_flag=True,
                     help="Refuse a task name the app does not register (default: warn). "
                          "Example: --strict"),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the task as JSON. Example: --json"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_schedule(values: dict[str, Any], zone: str, required: bool) -> Any:
    """The schedule the schedule options give (``None`` when none is given and not
    ``required``)."""
    from ..schedules import cron, every, once, schedule_from_dict, solar

    given = [k for k in ("every", "cron_expr", "solar", "once", "schedule_json")
             if values.get(k) not in (None, ())]
    names = {"every": "--every", "cron_expr": "--cron", "solar": "--solar", "once": "--once",
             "schedule_json": "--schedule-json"}
    if len(given) > 1:
        raise usage(f"give one schedule, not {' and '.join(names[k] for k in given)}")
    if not given:
        if required:
            raise usage("give a schedule: --every, --cron, --solar, --once or --schedule-json")
        if values.get("timezone") is not None:
            raise usage("--timezone applies to --cron or --once; give one of them")
        return None
    tz = zone_name(values.get("timezone")) or zone
    kind = given[0]
    if kind == "every":
        return every(seconds=duration(values["every"], "--every"))
    if kind == "cron_expr":
        return cron(values["cron_expr"], timezone=tz)
    if kind == "solar":
        event, lat, lon = values["solar"]
        return solar(event, lat, lon)
    if kind == "once":
        return once(instant(values["once"], "--once", tz))
    return schedule_from_dict(json_value(values["schedule_json"], "--schedule-json", dict))


def build_fields(values: dict[str, Any], zone: str) -> dict[str, Any]:
    """The definition fields the field options give (only those given)."""
    out: dict[str, Any] = {}
    if values.get("args_json") is not None:
        out["args"] = json_value(values["args_json"], "--args", list)
    if values.get("kwargs_json") is not None:
        out["kwargs"] = json_value(values["kwargs_json"], "--kwargs", dict)
    if values.get("headers_json") is not None:
        out["headers"] = json_value(values["headers_json"], "--headers", dict)
    if values.get("options_json") is not None:
        out["options"] = json_value(values["options_json"], "--options", dict)
    for key in ("queue", "priority", "group", "description", "catchup", "catchup_limit",
                "overlap", "jitter"):
        if values.get(key) is not None:
            out[key] = values[key]
    if values.get("expires") is not None:
        text = values["expires"]
        try:
            out["expires"] = float(text)
        except ValueError:
            out["expires"] = instant(text, "--expires", zone)
    if values.get("tags"):
        out["tags"] = list(values["tags"])
    if values.get("depends_on"):
        out["depends_on"] = list(values["depends_on"])
    if values.get("retry") is not None:
        out["retry"] = mapping(values["retry"], "--retry")
    if values.get("alerts") is not None:
        out["alerts"] = mapping(values["alerts"], "--alerts")
    if values.get("calendar") is not None:
        out["calendar"] = json_value(values["calendar"], "--calendar", dict)
    return out
