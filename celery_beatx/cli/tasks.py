"""Task commands: list, show, add, update, enable, disable, remove, next, versions, rollback."""

from __future__ import annotations

import json
from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from typing import Any

import click

from . import beatx
from ._core import (
    CliError,
    app_zone,
    check_task_name,
    confirm,
    emit_json,
    errors,
    jsonable,
    open_admin,
    progress,
    table,
    target,
    task_zone,
    usage,
    when,
)
from ._fields import CLEARABLE, build_fields, build_schedule, field_options, schedule_options

UTC = timezone.utc

JSON_HELP = "Print JSON instead of a table (times in ISO 8601 with their offset). Example: --json"


def info_dict(info: Any) -> dict[str, Any]:
    """A task as JSON-able data: its fields, ``schedule`` in its dict form, ``paused``."""
    data = {f.name: getattr(info, f.name) for f in dataclass_fields(info)}
    data["schedule"] = data.pop("schedule_dict")
    data["paused"] = info.paused
    return data


def info_json(info: Any, zone: str) -> dict[str, Any]:
    return jsonable(info_dict(info), task_zone(info, zone))  # type: ignore[no-any-return]


def schedule_text(info: Any, zone: str) -> str:
    """A schedule for people: ``every 5 min``, ``cron 0 9 * * * (Europe/Berlin)``..."""
    data = info.schedule_dict or {}
    kind = data.get("type")
    tz = f" ({data['timezone']})" if data.get("timezone") else ""
    if kind == "interval":
        seconds = float(data.get("seconds", 0))
        text = f"every {_seconds(seconds)}"
    elif kind == "cron":
        text = f"cron {data.get('expr')}{tz}"
    elif kind == "crontab":
        text = "crontab " + " ".join(str(data.get(k)) for k in (
            "minute", "hour", "day_of_month", "month_of_year", "day_of_week")) + tz
    elif kind == "once":
        try:
            at = datetime.fromisoformat(data["at"])
            text = f"once at {when(at, zone).split(' (')[0]}"
        except (KeyError, TypeError, ValueError):
            text = "once"
    elif kind == "solar":
        text = f"solar {data.get('event')} at {data.get('latitude')}, {data.get('longitude')}"
    else:
        text = json.dumps(data, sort_keys=True)
    return text + (" +calendar" if info.calendar else "")


def _seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def state_text(info: Any) -> str:
    if info.invalid_reason:
        return "INVALID"
    if info.paused:
        return "paused"
    return "enabled" if info.enabled else "disabled"


# -- list / show ------------------------------------------------------------------------------


@beatx.command(name="list", epilog="""\b
Examples:
  celery -A proj beatx list
  celery -A proj beatx list --group billing --enabled --json""")
@click.option("--group", help="Only tasks of this group. Example: --group billing")
@click.option("--tag", help="Only tasks with this tag. Example: --tag nightly")
@click.option("--enabled/--disabled", default=None,
              help="Only enabled (or only disabled) tasks. Example: --disabled")
@click.option("--source", help="Only tasks from this source (api, config, import). "
                               "Example: --source config")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def list_(ctx: click.Context, group: str | None, tag: str | None, enabled: bool | None,
          source: str | None, as_json: bool) -> None:
    """List tasks, by name, with their schedule, state and next and last run."""
    admin = open_admin(ctx)
    tasks = admin.list(group=group, tag=tag, enabled=enabled, source=source)
    zone = app_zone()
    if as_json:
        click.echo(json.dumps([info_json(t, zone) for t in tasks], indent=2, sort_keys=True))
        return
    tgt = target(ctx)
    click.echo(f"database: {tgt.shown} (from {tgt.origin}); {len(tasks)} task(s); "
               f"times in each task's zone, else the app's ({zone})")
    now = datetime.now(UTC)
    table([[t.name, t.task, schedule_text(t, task_zone(t, zone)), state_text(t),
            when(t.next_run_at, task_zone(t, zone), now),
            when(t.last_run_at, task_zone(t, zone), now), t.total_run_count, t.group]
           for t in tasks],
          ["name", "task", "schedule", "state", "next run", "last run", "runs", "group"])


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx show nightly
  celery -A proj beatx show nightly --json""")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show every field and the state of one task."""
    info = open_admin(ctx).get(name)
    zone = task_zone(info, app_zone())
    if as_json:
        emit_json(info_json(info, zone))
        return
    show_task(info, zone)


def show_task(info: Any, zone: str) -> None:
    now = datetime.now(UTC)
    paused = (f"paused by {info.paused_by} {when(info.paused_at, zone, now)}: "
              f"{info.paused_reason or '(no reason)'}") if info.paused else "no"
    rows: list[tuple[str, Any]] = [
        ("name", info.name), ("task", info.task), ("description", info.description or None),
        ("enabled", info.enabled), ("paused", paused),
        ("schedule", schedule_text(info, zone)), ("time zone", zone),
        ("next run", when(info.next_run_at, zone, now)),
        ("last run", when(info.last_run_at, zone, now)), ("runs", info.total_run_count),
        ("calendar", info.calendar), ("args", info.args), ("kwargs", info.kwargs),
        ("queue", info.queue), ("priority", info.priority),
        ("expires", when(info.expires, zone, now) if isinstance(info.expires, datetime)
         else (f"{info.expires:g} s after each send" if info.expires else None)),
        ("headers", info.headers), ("options", info.options), ("group", info.group),
        ("tags", info.tags), ("depends on", info.depends_on), ("retry", info.retry),
        ("alerts", info.alerts), ("jitter", f"{info.jitter:g} s" if info.jitter else None),
        ("catchup", info.catchup), ("catchup limit", info.catchup_limit),
        ("overlap", info.overlap), ("source", info.source), ("version", info.version),
        ("invalid", info.invalid_reason),
        ("schedule (JSON)", info.schedule_dict),
    ]
    from rich.table import Table

    from ._core import cell, print_rich

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", justify="right")
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, cell(value))
    print_rich(grid)


# -- add / update ------------------------------------------------------------------------------


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx add nightly proj.tasks.report --cron "30 2 * * *"
  celery -A proj beatx add poll proj.tasks.poll --every 30s --queue io --tag fast
  celery -A proj beatx add launch proj.tasks.launch --once 2026-05-01T09:00
  celery -A proj beatx add lights proj.tasks.lights --solar sunset 48.85 2.35
  celery -A proj beatx add --from-file tasks.json""")
@click.argument("name", required=False)
@click.argument("task", required=False)
@schedule_options
@field_options
@click.option("--disabled", is_flag=True,
              help="Add it disabled (enable it later). Example: --disabled")
@click.option("--from-file", type=click.File("r"), metavar="FILE",
              help="Add every task of a JSON list of task objects (name, task, schedule in "
                   "its JSON form, other fields): all or none. Example: --from-file tasks.json")
@click.pass_context
@errors
def add(ctx: click.Context, name: str | None, task: str | None, disabled: bool,
        from_file: Any, strict: bool, as_json: bool, **values: Any) -> None:
    """Add a task NAME that sends the Celery task TASK on a schedule.

    Give one schedule (--every, --cron, --solar, --once or --schedule-json); every other
    field is optional.  A cron expression without --timezone is read in the app's zone.
    """
    zone = app_zone()
    if from_file is not None:
        if name or task or any(v not in (None, ()) for v in values.values()) or disabled:
            raise usage("--from-file takes no NAME, TASK or field options")
        _add_many(ctx, from_file, strict, as_json)
        return
    if not name or not task:
        raise usage("give NAME and TASK (or --from-file FILE)")
    schedule = build_schedule(values, zone, required=True)
    fields = build_fields(values, zone)
    check_task_name(task, strict)
    info = open_admin(ctx).add(name, task, schedule, enabled=not disabled, **fields)
    tz = task_zone(info, zone)
    if as_json:
        emit_json(info_json(info, tz))
    else:
        click.echo(f"added {info.name}: {schedule_text(info, tz)}, next run "
                   f"{when(info.next_run_at, tz)}")


def _add_many(ctx: click.Context, source: Any, strict: bool, as_json: bool) -> None:
    from ..definitions import DEFAULTS, validate_fields
    from ..errors import InvalidSchedule

    try:
        specs = json.load(source)
    except ValueError as exc:
        raise CliError(f"--from-file {source.name}: not valid JSON ({exc})") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise CliError(f"--from-file {source.name}: must be a JSON list of task objects")
    admin = open_admin(ctx)
    checked: set[str] = set()
    with progress(f"checking {len(specs)} task(s)", len(specs), not as_json) as advance:
        for i, spec in enumerate(specs):
            where = f"--from-file {source.name}: task [{i}] ({spec.get('name')!r})"
            for key in ("name", "task", "schedule"):
                if key not in spec:
                    raise CliError(f"{where}: {key} is missing")
            try:
                validate_fields(dict(DEFAULTS, **{k: v for k, v in spec.items()
                                                  if k not in ("source",)}),
                                admin.timezone)
            except InvalidSchedule as exc:
                raise CliError(f"{where}: {exc}") from None
            if spec["task"] not in checked:
                checked.add(spec["task"])
                check_task_name(spec["task"], strict)
            advance()
    with progress(f"adding {len(specs)} task(s)", None, not as_json):
        added = admin.add_many(specs)
    if as_json:
        zone = app_zone()
        click.echo(json.dumps([info_json(i, zone) for i in added], indent=2, sort_keys=True))
    else:
        click.echo(f"added {len(added)} task(s)")


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx update nightly --cron "0 3 * * *" --timezone Europe/Paris
  celery -A proj beatx update poll --every 1m --priority 3 --clear tags
  celery -A proj beatx update nightly --task proj.tasks.report_v2 --disable""")
@click.argument("name")
@click.option("--task", "new_task", metavar="TASK",
              help="Send this Celery task instead. Example: --task proj.tasks.report_v2")
@schedule_options
@field_options
@click.option("--enable/--disable", "enabled", default=None,
              help="Enable or disable it as well. Example: --disable")
@click.option("--clear", "clear", multiple=True, type=click.Choice(sorted(CLEARABLE)),
              help="Reset a field to its default (repeat for several). Example: --clear retry")
@click.pass_context
@errors
def update(ctx: click.Context, name: str, new_task: str | None, enabled: bool | None,
           clear: tuple[str, ...], strict: bool, as_json: bool, **values: Any) -> None:
    """Change any field of task NAME, its schedule included (a new version)."""
    zone = app_zone()
    admin = open_admin(ctx)
    current = admin.get(name)
    # A new cron or once time without --timezone keeps the task's zone (else the app's).
    schedule = build_schedule(values, task_zone(current, zone), required=False)
    fields = build_fields(values, zone)
    for key in clear:
        if key in fields:
            raise usage(f"--clear {key} and a new value for {key}: give one")
        fields[key] = CLEARABLE[key]
    if schedule is not None:
        fields["schedule"] = schedule
    if new_task is not None:
        check_task_name(new_task, strict)
        fields["task"] = new_task
    if enabled is not None:
        fields["enabled"] = enabled
    if not fields:
        raise usage("nothing to change: give at least one option (see --help)")
    info = admin.update(name, **fields)
    tz = task_zone(info, zone)
    if as_json:
        emit_json(info_json(info, tz))
    else:
        click.echo(f"updated {name} (version {info.version}): {schedule_text(info, tz)}, "
                   f"{state_text(info)}, next run {when(info.next_run_at, tz)}")


# -- enable / disable / remove -----------------------------------------------------------------


def _selection(names: tuple[str, ...], group: str | None, tag: str | None) -> None:
    chosen = sum(1 for x in (names, group, tag) if x)
    if chosen != 1:
        raise usage("give task NAME(s), or --group GROUP, or --tag TAG (one of them)")


def _switch(ctx: click.Context, enable: bool, names: tuple[str, ...], group: str | None,
            tag: str | None, as_json: bool) -> None:
    _selection(names, group, tag)
    admin = open_admin(ctx)
    verb = "enabled" if enable else "disabled"
    if group or tag:
        method = f"{'enable' if enable else 'disable'}_{'group' if group else 'tag'}"
        count = getattr(admin, method)(group or tag)
        if as_json:
            emit_json({verb: count, "group" if group else "tag": group or tag})
        else:
            click.echo(f"{verb} {count} task(s) of {'group' if group else 'tag'} "
                       f"{group or tag!r}")
        return
    existing = {t.name for t in admin.list()}
    missing = [n for n in names if n not in existing]
    if missing:
        raise CliError(f"task {missing[0]!r} does not exist (nothing was changed)")
    infos = [admin.enable(n) if enable else admin.disable(n) for n in names]
    if as_json:
        zone = app_zone()
        click.echo(json.dumps([info_json(i, zone) for i in infos], indent=2, sort_keys=True))
    else:
        zone = app_zone()
        for info in infos:
            tail = f"; next run {when(info.next_run_at, task_zone(info, zone))}" if enable \
                else ""
            click.echo(f"{verb} {info.name}{tail}")


def _selection_options(verb: str):  # type: ignore[no-untyped-def]
    def decorate(fn: Any) -> Any:
        fn = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(fn)
        fn = click.option("--tag", help=f"{verb} every task with this tag. Example: "
                                        "--tag nightly")(fn)
        fn = click.option("--group", help=f"{verb} every task of this group. Example: "
                                          "--group billing")(fn)
        return click.argument("names", nargs=-1, metavar="[NAME]...")(fn)
    return decorate


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx enable nightly
  celery -A proj beatx enable --group billing""")
@_selection_options("Enable")
@click.pass_context
@errors
def enable(ctx: click.Context, names: tuple[str, ...], group: str | None, tag: str | None,
           as_json: bool) -> None:
    """Enable tasks (by name, group or tag); their next run is computed from now."""
    _switch(ctx, True, names, group, tag, as_json)


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx disable nightly
  celery -A proj beatx disable --tag reports""")
@_selection_options("Disable")
@click.pass_context
@errors
def disable(ctx: click.Context, names: tuple[str, ...], group: str | None, tag: str | None,
            as_json: bool) -> None:
    """Disable tasks (by name, group or tag); beat stops sending them within a second."""
    _switch(ctx, False, names, group, tag, as_json)


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx remove nightly
  celery -A proj beatx remove --group old --yes""")
@_selection_options("Remove")
@click.option("--force", is_flag=True,
              help="Also take the removed tasks out of the depends_on of others. "
                   "Example: --force")
@click.option("--yes", is_flag=True,
              help="Remove a whole group or tag without asking. Example: --yes")
@click.pass_context
@errors
def remove(ctx: click.Context, names: tuple[str, ...], group: str | None, tag: str | None,
           as_json: bool, force: bool, yes: bool) -> None:
    """Remove tasks (by name, group or tag); their run history stays."""
    _selection(names, group, tag)
    admin = open_admin(ctx)
    if group or tag:
        chosen = admin.list(group=group, tag=tag)
        if not chosen:
            raise CliError(f"no task has {'group' if group else 'tag'} {group or tag!r} "
                           "(nothing was removed)")
        listed = ", ".join(t.name for t in chosen)
        confirm(f"remove {len(chosen)} task(s): {listed}?", yes,
                f"this removes {len(chosen)} task(s) ({listed})")
    else:
        by_name = {t.name: t for t in admin.list()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise CliError(f"task {missing[0]!r} does not exist (nothing was removed)")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
    admin.remove_many([t.name for t in chosen], force=force)
    config = [t.name for t in chosen if t.source == "config"]
    if as_json:
        emit_json({"removed": [t.name for t in chosen], "from_beat_schedule": config})
    else:
        for t in chosen:
            click.echo(f"removed {t.name}")
    for name in config:
        click.echo(f"note: {name!r} comes from the app's beat_schedule: it comes back at the "
                   "next beat start unless you remove it from beat_schedule too", err=True)


# -- next / versions / rollback ----------------------------------------------------------------


@beatx.command(name="next", epilog="""\b
Examples:
  celery -A proj beatx next nightly
  celery -A proj beatx next nightly -n 10 --json""")
@click.argument("name")
@click.option("-n", "--count", "count", default=5, show_default=True,
              type=click.IntRange(1, 1000), help="How many fire times. Example: -n 10")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def next_(ctx: click.Context, name: str, count: int, as_json: bool) -> None:
    """Show the next fire times of a task, in its zone (else the app's)."""
    admin = open_admin(ctx)
    info = admin.get(name)
    zone = task_zone(info, app_zone())
    runs = admin.next_runs(name, count)
    if as_json:
        emit_json(runs, zone)
        return
    now = datetime.now(UTC)
    table([[i + 1, when(r, zone, now)] for i, r in enumerate(runs)], ["#", f"next run ({zone})"])


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx versions nightly
  celery -A proj beatx versions nightly --json""")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def versions(ctx: click.Context, name: str, as_json: bool) -> None:
    """List the versions of a task's definition, oldest first."""
    zone = app_zone()
    found = open_admin(ctx).versions(name)
    if as_json:
        emit_json(found, zone)
        return
    now = datetime.now(UTC)
    table([[v.version, when(v.created_at, zone, now), v.created_by, v.comment,
            json.dumps(v.definition.get("schedule"), sort_keys=True)] for v in found],
          ["version", "created", "by", "comment", "schedule"])


@beatx.command(epilog="""\b
Example:
  celery -A proj beatx rollback nightly 3""")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def rollback(ctx: click.Context, name: str, version: int, as_json: bool) -> None:
    """Make VERSION of a task current again (as a new version)."""
    info = open_admin(ctx).rollback(name, version)
    if as_json:
        emit_json(info_json(info, app_zone()))
    else:
        click.echo(f"{name} is now version {info.version} (= version {version})")
