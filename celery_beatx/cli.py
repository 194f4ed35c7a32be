"""``celery -A proj beatx <command>``: the admin API on the command line.

Tables for people, ``--json`` for scripts.  Errors exit with status 1 and a one-line message.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import click

from .errors import BeatxError


def _admin(ctx: click.Context) -> Any:
    from .admin import BeatAdmin

    url = ctx.meta.get("beatx_url")
    if url:
        return BeatAdmin(url=url)
    app = getattr(ctx.obj, "app", None)
    if app is None:
        raise click.UsageError("give -A APP to celery, or --url to beatx")
    return BeatAdmin(app)


def _app_zone(ctx: click.Context) -> str:
    """The app's zone as Celery resolves it (``"UTC"`` without an app)."""
    from .config import app_timezone

    app = getattr(ctx.obj, "app", None)
    return "UTC" if app is None else app_timezone(app)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _emit(data: Any, as_json: bool, table: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, default=_default, indent=2, sort_keys=True))
    else:
        table(data)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    return str(value)


def _table(rows: list[list[Any]], headers: list[str]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)))


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BeatxError as exc:
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)

    return wrapper


def _schedule_text(info: Any) -> str:
    data = info.schedule_dict
    kind = data.get("type")
    if kind == "interval":
        return f"every {data['seconds']}s"
    if kind == "cron":
        return f"cron {data.get('expr')}" + (
            f" ({data['timezone']})" if data.get("timezone") else "")
    if kind == "crontab":
        fields = " ".join(str(data.get(k)) for k in (
            "minute", "hour", "day_of_week", "day_of_month", "month_of_year"))
        return f"crontab {fields}" + (f" ({data['timezone']})" if data.get("timezone") else "")
    return json.dumps(data, sort_keys=True)


@click.group(name="beatx")
@click.option("--url", envvar="BEATX_ADMIN_URL", default=None,
              help="Database URL (default: the app's beatx_database_url).")
@click.pass_context
def beatx(ctx: click.Context, url: str | None, **_preload: Any) -> None:
    """Manage celery-beatx schedules."""
    ctx.meta["beatx_url"] = url


@beatx.command()
@click.pass_context
@_errors
def migrate(ctx: click.Context) -> None:
    """Upgrade the schedule database to this release's schema."""
    from . import migrate as m

    admin = _admin(ctx)
    before = m.current_revision(admin.engine)
    after = m.upgrade(admin.engine)
    click.echo(f"schema: {before or 'empty'} -> {after}")


@beatx.command(name="list")
@click.option("--group")
@click.option("--tag")
@click.option("--enabled/--disabled", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def list_(ctx: click.Context, group: str | None, tag: str | None, enabled: bool | None,
          as_json: bool) -> None:
    """List tasks."""
    tasks = _admin(ctx).list(group=group, tag=tag, enabled=enabled)
    _emit([_info_dict(t) for t in tasks], as_json, lambda rows: _table(
        [[t["name"], t["task"], _schedule_text(i), "yes" if t["enabled"] else "no",
          t["next_run_at"], t["last_run_at"], t["total_run_count"]]
         for t, i in zip(rows, tasks)],
        ["name", "task", "schedule", "enabled", "next run", "last run", "runs"]))


def _info_dict(info: Any) -> dict[str, Any]:
    data = asdict(info)
    data["schedule"] = data.pop("schedule_dict")
    return data


@beatx.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one task."""
    info = _admin(ctx).get(name)
    data = _info_dict(info)

    def table(d: dict[str, Any]) -> None:
        for key in sorted(d):
            click.echo(f"{key:>16}: {_fmt(d[key])}")

    _emit(data, as_json, table)


@beatx.command()
@click.argument("name")
@click.argument("task")
@click.option("--every", "interval", type=float, help="Interval in seconds.")
@click.option("--cron", "cron_expr", help='Standard 5-field cron, e.g. "0 9 * * 1-5".')
@click.option("--timezone", default=None,
              help="IANA zone of --cron (default: the app's Celery timezone).")
@click.option("--args", "args_json", default="[]", help="JSON list.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object.")
@click.option("--queue")
@click.option("--disabled", is_flag=True)
@click.pass_context
@_errors
def add(ctx: click.Context, name: str, task: str, interval: float | None,
        cron_expr: str | None, timezone: str | None, args_json: str, kwargs_json: str,
        queue: str | None, disabled: bool) -> None:
    """Add a task with --every SECONDS or --cron EXPR."""
    from .schedules import cron, every

    if (interval is None) == (cron_expr is None):
        raise click.UsageError("give exactly one of --every and --cron")
    schedule = every(seconds=interval) if interval is not None else cron(
        cron_expr, timezone=timezone or _app_zone(ctx))
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except ValueError as exc:
        raise click.UsageError(f"--args/--kwargs must be JSON: {exc}") from None
    info = _admin(ctx).add(name, task, schedule, args=args, kwargs=kwargs, queue=queue,
                           enabled=not disabled)
    click.echo(f"added {info.name} (next run {_fmt(info.next_run_at)})")


def _simple(verb: str, method: str) -> None:
    @beatx.command(name=verb, help=f"{verb.capitalize()} a task.")
    @click.argument("name")
    @click.pass_context
    @_errors
    def command(ctx: click.Context, name: str) -> None:
        getattr(_admin(ctx), method)(name)
        click.echo(f"{verb}d {name}" if verb.endswith("e") else f"{verb}ed {name}")


for _verb in ("enable", "disable", "remove"):
    _simple(_verb, _verb)


@beatx.command(name="next")
@click.argument("name")
@click.option("-n", "count", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def next_(ctx: click.Context, name: str, count: int, as_json: bool) -> None:
    """Show the next fire times of a task."""
    runs = _admin(ctx).next_runs(name, count)
    _emit(runs, as_json, lambda rows: [click.echo(r.isoformat()) for r in rows])


@beatx.command()
@click.argument("name")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def history(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Show the newest runs of a task."""
    runs = _admin(ctx).history(name, limit)
    _emit([asdict(r) for r in runs], as_json, lambda rows: _table(
        [[r["scheduled_at"], r["status"], r["attempt"], r["task_id"], r["error"]]
         for r in rows], ["scheduled", "status", "attempt", "task id", "error"]))


@beatx.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def versions(ctx: click.Context, name: str, as_json: bool) -> None:
    """List the versions of a task."""
    rows = [asdict(v) for v in _admin(ctx).versions(name)]
    _emit(rows, as_json, lambda rs: _table(
        [[r["version"], r["created_at"], r["comment"], json.dumps(r["definition"]["schedule"])]
         for r in rs], ["version", "created", "comment", "schedule"]))


@beatx.command()
@click.argument("name")
@click.argument("version", type=int)
@click.pass_context
@_errors
def rollback(ctx: click.Context, name: str, version: int) -> None:
    """Make an older version current again (as a new version)."""
    info = _admin(ctx).rollback(name, version)
    click.echo(f"{name} is now version {info.version} (= version {version})")


@beatx.command(name="export")
@click.option("-o", "--output", type=click.File("w"), default="-")
@click.pass_context
@_errors
def export_(ctx: click.Context, output: Any) -> None:
    """Write every task, definition and state, as JSON."""
    output.write(_admin(ctx).export_state() + "\n")


@beatx.command(name="import")
@click.argument("source", type=click.File("r"))
@click.option("--replace", is_flag=True, help="Also remove tasks the document does not name.")
@click.pass_context
@_errors
def import_(ctx: click.Context, source: Any, replace: bool) -> None:
    """Load a JSON document written by `export` (all or nothing)."""
    count = _admin(ctx).import_state(source.read(), mode="replace" if replace else "merge")
    click.echo(f"imported {count} task(s)")


# -- health, status, alerts, conflicts ---------------------------------------------------------


@beatx.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--instance", default=None,
              help="Judge only this beat's heartbeat (its beatx_instance_id, or the hostname "
                   "of the default hostname:pid): a per-process liveness probe.")
@click.option("--overdue-grace", type=float, default=None,
              help="Seconds a task may be behind its fire time (default 60).")
@click.pass_context
@_errors
def health(ctx: click.Context, as_json: bool, instance: str | None,
           overdue_grace: float | None) -> None:
    """Check beat's health; exit 0 when healthy, 1 when not (for probes)."""
    options: dict[str, Any] = {"instance": instance}
    if overdue_grace is not None:
        options["overdue_grace"] = overdue_grace
    try:
        report = _admin(ctx).health(**options)
    except BeatxError:
        raise
    except Exception as exc:  # a probe must answer: the database is part of beat's health
        from .beat.outage import cause

        click.echo(f"UNHEALTHY\n  problem: cannot read the schedule database: {cause(exc)}")
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo("healthy" if report.healthy else "UNHEALTHY")
        for problem in report.problems:
            click.echo(f"  problem: {problem}")
        for warning in report.warnings:
            click.echo(f"  warning: {warning}")
    sys.exit(0 if report.healthy else 1)


@beatx.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Show beat instances, overdue tasks, stuck runs, invalid tasks and open alerts."""
    report = _admin(ctx).health()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"{'healthy' if report.healthy else 'UNHEALTHY'} at {_fmt(report.checked_at)}; "
               f"schema {report.schema.current or '-'} (head {report.schema.head}); "
               f"sending: {report.leader or 'nobody'}")
    for problem in report.problems:
        click.echo(f"  problem: {problem}")
    for warning in report.warnings:
        click.echo(f"  warning: {warning}")
    sections: list[tuple[str, list[list[Any]], list[str]]] = [
        ("Beat instances", [[i.instance_id, i.role, "yes" if i.alive else "no",
                             f"{i.heartbeat_age:.1f} s", f"{i.heartbeat_every:g} s",
                             i.started_at] for i in report.instances],
         ["instance", "role", "alive", "heartbeat age", "every", "started"]),
        (f"Overdue tasks ({report.overdue_count})",
         [[o.name, o.next_run_at, f"{o.late_seconds:.0f} s"] for o in report.overdue],
         ["task", "next run", "late"]),
        (f"Stuck runs ({report.stuck_count})",
         [[r.task_name, r.scheduled_at, r.task_id, r.reason] for r in report.stuck],
         ["task", "scheduled", "task id", "reason"]),
        (f"Invalid tasks ({report.invalid_count})",
         [[t.name, t.reason] for t in report.invalid], ["task", "reason"]),
        (f"Open alerts ({report.open_alert_count})",
         [[a.at, a.level, a.kind, a.task_name, a.message] for a in report.open_alerts],
         ["at", "level", "kind", "task", "message"]),
    ]
    for title, rows, headers in sections:
        click.echo(f"\n{title}")
        if rows:
            _table(rows, headers)
        else:
            click.echo("  none")
    outcomes = report.outcomes
    if outcomes is not None:
        click.echo(f"\nRun outcomes: {outcomes.needed_by} task(s) need them; newest "
                   f"{_fmt(outcomes.last_outcome_at)}; "
                   f"{'recorded' if outcomes.recorded else 'NOT being recorded'}")


@beatx.command(name="alerts")
@click.option("--level", type=click.Choice(["info", "warning", "critical"]), default=None,
              help="Minimum level.")
@click.option("--task", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def alerts_(ctx: click.Context, level: str | None, task: str | None, limit: int,
            as_json: bool) -> None:
    """List stored alerts, newest first."""
    rows = [asdict(a) for a in _admin(ctx).alerts(level=level, task=task, limit=limit)]
    _emit(rows, as_json, lambda rs: _table(
        [[r["at"], r["level"], r["kind"], r["task_name"], r["message"],
          "yes" if r["resolved_at"] else "-"] for r in rs],
        ["at", "level", "kind", "task", "message", "resolved"]))


@beatx.command()
@click.option("--window", type=float, default=60.0, show_default=True,
              help="Seconds between two fire times that count as a conflict.")
@click.option("--hours", type=float, default=24.0, show_default=True,
              help="How far ahead to look.")
@click.option("--high", "high_severity", is_flag=True, help="Only high-severity conflicts.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_errors
def conflicts(ctx: click.Context, window: float, hours: float, high_severity: bool,
              limit: int, as_json: bool) -> None:
    """List pairs of tasks that fire within --window seconds of each other."""
    from datetime import timedelta

    if not 0 < hours <= 366 * 24:
        raise click.UsageError("--hours must be > 0 and at most a year")
    found = _admin(ctx).conflicts(window=window, horizon=timedelta(hours=hours),
                                  high_severity=high_severity, limit=limit)
    _emit([asdict(c) for c in found], as_json, lambda rs: _table(
        [[r["severity"], r["task1"], r["task2"], r["at"], f"{r['overlap_seconds']:g}",
          r["count"]] for r in rs],
        ["severity", "task 1", "task 2", "first at", "overlap s", "times"]))
