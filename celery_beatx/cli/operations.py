"""Database-wide commands: migrate, export, import, health, status, alerts, conflicts,
dependencies."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from . import beatx
from ._core import (
    CliError,
    app_zone,
    confirm,
    emit_json,
    errors,
    jsonable,
    open_admin,
    progress,
    table,
    target,
    when,
)
from .tasks import JSON_HELP

UTC = timezone.utc
#: Names listed per kind of change in an import plan (the counts are always exact).
PLAN_SHOWN = 50


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx migrate
  celery -A proj beatx -s /var/run/beat migrate""")
@click.pass_context
@errors
def migrate(ctx: click.Context) -> None:
    """Create the schedule database, or upgrade it to this release's schema.

    The only command that creates a database (beat also does, at start, with
    beatx_auto_migrate).
    """
    from .. import migrate as m

    admin = open_admin(ctx, create=True)
    try:
        before = m.current_revision(admin.engine)
        after = m.upgrade(admin.engine)
    except Exception as exc:
        from ._core import connect_error

        raise connect_error(target(ctx), exc) from None
    click.echo(f"database: {target(ctx).shown}; schema: {before or 'empty'} -> {after}")


@beatx.command(name="export", epilog="""\b
Examples:
  celery -A proj beatx export -o schedules.json
  celery -A proj beatx export > schedules.json""")
@click.option("-o", "--output", type=click.File("w"), default="-", metavar="FILE",
              help="Write to FILE instead of stdout. Example: -o schedules.json")
@click.pass_context
@errors
def export_(ctx: click.Context, output: Any) -> None:
    """Write every task, definition and state, as a JSON document (celery-beatx/1)."""
    output.write(open_admin(ctx).export_state() + "\n")


def _plan(admin: Any, doc: Any, replace: bool, as_json: bool) -> dict[str, Any]:
    """What importing ``doc`` would add, change and remove (definitions compared in their
    validated form, so a document exported from the same tasks changes nothing)."""
    from ..definitions import DEFAULTS, DEFINITION_FIELDS, validate_fields
    from ..errors import InvalidSchedule

    def normal(fields: dict[str, Any]) -> dict[str, Any]:
        spec = dict(DEFAULTS)
        spec.update({k: fields[k] for k in DEFINITION_FIELDS if k in fields})
        return validate_fields(spec, admin.timezone)

    current = {t.name: t for t in admin.list()}
    add, change, same = [], [], 0
    seen: set[str] = set()
    items = doc["tasks"]
    with progress(f"checking {len(items)} task(s)", len(items), not as_json) as advance:
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise CliError(f"tasks[{i}] is not an object (nothing was imported)")
            name = item.get("name")
            try:
                wanted = normal(item)
            except InvalidSchedule as exc:
                raise CliError(f"tasks[{i}] ({name!r}): {exc} (nothing was imported)") from None
            seen.add(name)  # type: ignore[arg-type]
            info = current.get(name)  # type: ignore[arg-type]
            if info is None:
                add.append(name)
            elif normal(info.definition()) != wanted or \
                    bool(item.get("enabled", True)) != info.enabled:
                change.append(name)
            else:
                same += 1
            advance()
    remove = sorted(n for n in current if n not in seen) if replace else []
    return {"mode": "replace" if replace else "merge", "add": add, "change": change,
            "remove": remove, "unchanged": same}


def _print_plan(plan: dict[str, Any]) -> None:
    click.echo(f"import ({plan['mode']}): add {len(plan['add'])}, change "
               f"{len(plan['change'])}, remove {len(plan['remove'])}, unchanged "
               f"{plan['unchanged']}")
    for mark, key in (("+", "add"), ("~", "change"), ("-", "remove")):
        names = plan[key]
        for name in names[:PLAN_SHOWN]:
            click.echo(f"  {mark} {name}")
        if len(names) > PLAN_SHOWN:
            click.echo(f"  {mark} ... and {len(names) - PLAN_SHOWN} more")


@beatx.command(name="import", epilog="""\b
Examples:
  celery -A proj beatx import schedules.json
  celery -A proj beatx import schedules.json --replace --dry-run
  celery -A proj beatx import schedules.json --replace --yes""")
@click.argument("source", type=click.File("r"), metavar="FILE")
@click.option("--replace", is_flag=True,
              help="Also remove the tasks the document does not name (asks first). "
                   "Example: --replace")
@click.option("--dry-run", is_flag=True,
              help="Only print what would be added, changed and removed. Example: --dry-run")
@click.option("--yes", is_flag=True,
              help="Do not ask before --replace removes or changes tasks. Example: --yes")
@click.option("--json", "as_json", is_flag=True,
              help="Print the plan and the result as JSON. Example: --json")
@click.pass_context
@errors
def import_(ctx: click.Context, source: Any, replace: bool, dry_run: bool, yes: bool,
            as_json: bool) -> None:
    """Load a document written by `export`: all of it or nothing.

    Prints what it adds, changes and (with --replace) removes first.
    """
    text = source.read()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{source.name} is not valid JSON ({exc}); nothing was imported") \
            from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list):
        raise CliError(f"{source.name} is not a celery-beatx export (an object with a "
                       "'tasks' list); nothing was imported")
    admin = open_admin(ctx)
    plan = _plan(admin, doc, replace, as_json)
    if not as_json:
        _print_plan(plan)
    if dry_run:
        if as_json:
            emit_json(dict(plan, dry_run=True, imported=0))
        return
    if replace and (plan["remove"] or plan["change"]):
        confirm(f"remove {len(plan['remove'])} and change {len(plan['change'])} task(s)?",
                yes, f"import --replace would remove {len(plan['remove'])} and change "
                     f"{len(plan['change'])} task(s)")
    with progress(f"importing {len(doc['tasks'])} task(s)", None, not as_json):
        count = admin.import_state(text, mode="replace" if replace else "merge")
    if as_json:
        emit_json(dict(plan, dry_run=False, imported=count))
    else:
        click.echo(f"imported {count} task(s)" + (
            f", removed {len(plan['remove'])}" if plan["remove"] else ""))


# -- health, status, alerts, conflicts, dependencies -------------------------------------------


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx health                     # exit 0 healthy, 1 not
  celery -A proj beatx health --instance beat-1 --json""")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option("--instance", default=None,
              help="Judge only this beat's heartbeat (its beatx_instance_id, or the hostname "
                   "of the default hostname:pid): a per-process liveness probe. "
                   "Example: --instance beat-1")
@click.option("--overdue-grace", type=float, default=None,
              help="Seconds a task may be behind its fire time (default 60). "
                   "Example: --overdue-grace 120")
@click.pass_context
@errors
def health(ctx: click.Context, as_json: bool, instance: str | None,
           overdue_grace: float | None) -> None:
    """Check beat's health; exit 0 when healthy, 1 when not (for probes)."""
    options: dict[str, Any] = {"instance": instance}
    if overdue_grace is not None:
        options["overdue_grace"] = overdue_grace
    admin = open_admin(ctx)
    try:
        report = admin.health(**options)
    except Exception as exc:  # a probe must answer: the database is part of beat's health
        from ..beat.outage import cause
        from ..errors import BeatxError

        if isinstance(exc, BeatxError):
            raise
        click.echo(f"UNHEALTHY: cannot read the schedule database: {cause(exc)}")
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


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx status
  celery -A proj beatx status --json""")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Show beat instances, overdue tasks, stuck runs, invalid tasks and open alerts."""
    report = open_admin(ctx).health()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    zone = app_zone()
    now = datetime.now(UTC)
    click.echo(f"database: {target(ctx).shown}")
    click.echo(f"{'healthy' if report.healthy else 'UNHEALTHY'} at "
               f"{when(report.checked_at, zone, now)}; schema {report.schema.current or '-'} "
               f"(head {report.schema.head}); sending: {report.leader or 'nobody'}")
    for problem in report.problems:
        click.echo(f"  problem: {problem}")
    for warning in report.warnings:
        click.echo(f"  warning: {warning}")
    sections: list[tuple[str, list[list[Any]], list[str]]] = [
        ("Beat instances", [[i.instance_id, i.role, i.alive, f"{i.heartbeat_age:.1f} s",
                             f"{i.heartbeat_every:g} s", when(i.started_at, zone, now)]
                            for i in report.instances],
         ["instance", "role", "alive", "heartbeat age", "every", "started"]),
        (f"Overdue tasks ({report.overdue_count})",
         [[o.name, when(o.next_run_at, zone, now), f"{o.late_seconds:.0f} s"]
          for o in report.overdue], ["name", "next run", "late"]),
        (f"Stuck runs ({report.stuck_count})",
         [[r.task_name, when(r.scheduled_at, zone, now), r.task_id, r.reason]
          for r in report.stuck], ["name", "scheduled", "task id", "reason"]),
        (f"Invalid tasks ({report.invalid_count})",
         [[t.name, t.reason] for t in report.invalid], ["name", "reason"]),
        (f"Open alerts ({report.open_alert_count})",
         [[a.task_name, when(a.at, zone, now), a.level, a.kind, a.message]
          for a in report.open_alerts], ["name", "at", "level", "kind", "message"]),
    ]
    for title, rows, headers in sections:
        click.echo("")
        table(rows, headers, title=title)
    outcomes = report.outcomes
    if outcomes is not None:
        newest = when(outcomes.last_outcome_at, zone, now)
        click.echo(f"\nRun outcomes: {outcomes.needed_by} task(s) need them; newest "
                   f"{newest}; {'recorded' if outcomes.recorded else 'NOT being recorded'}")


@beatx.command(name="alerts", epilog="""\b
Examples:
  celery -A proj beatx alerts
  celery -A proj beatx alerts --level critical --task nightly --json""")
@click.option("--level", type=click.Choice(["info", "warning", "critical"]), default=None,
              help="Minimum level. Example: --level warning")
@click.option("--task", default=None, help="Only alerts of this task. Example: --task nightly")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, None),
              help="How many, newest first. Example: --limit 200")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def alerts_(ctx: click.Context, level: str | None, task: str | None, limit: int,
            as_json: bool) -> None:
    """List stored alerts, newest first."""
    found = open_admin(ctx).alerts(level=level, task=task, limit=limit)
    zone = app_zone()
    if as_json:
        emit_json(found, zone)
        return
    now = datetime.now(UTC)
    table([[a.task_name, when(a.at, zone, now), a.level, a.kind, a.message,
            when(a.resolved_at, zone, now) if a.resolved_at else None] for a in found],
          ["name", "at", "level", "kind", "message", "resolved"])


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx conflicts
  celery -A proj beatx conflicts --window 300 --hours 168 --high --json""")
@click.option("--window", type=float, default=60.0, show_default=True,
              help="Seconds between two fire times that count as a conflict. "
                   "Example: --window 300")
@click.option("--hours", type=float, default=24.0, show_default=True,
              help="How far ahead to look. Example: --hours 168")
@click.option("--high", "high_severity", is_flag=True,
              help="Only high-severity conflicts. Example: --high")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, None),
              help="Most pairs listed. Example: --limit 20")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def conflicts(ctx: click.Context, window: float, hours: float, high_severity: bool,
              limit: int, as_json: bool) -> None:
    """List pairs of tasks that fire within --window seconds of each other."""
    if not 0 < hours <= 366 * 24:
        from ._core import usage

        raise usage("--hours must be > 0 and at most a year")
    found = open_admin(ctx).conflicts(window=window, horizon=timedelta(hours=hours),
                                      high_severity=high_severity, limit=limit)
    zone = app_zone()
    if as_json:
        emit_json(found, zone)
        return
    now = datetime.now(UTC)
    table([[c.task1, c.task2, c.severity, when(c.at, zone, now), f"{c.overlap_seconds:g}",
            c.count] for c in found],
          ["name", "other task", "severity", "first at", "overlap s", "times"])


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx dependencies            # check the whole graph (exit 1 on problems)
  celery -A proj beatx dependencies load       # what load waits for, in order""")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def dependencies(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Check the dependency graph, or show the chain a task depends on (in run order)."""
    admin = open_admin(ctx)
    if name is not None:
        chain = admin.dependency_chain(name)
        if as_json:
            emit_json(chain)
        else:
            click.echo(" -> ".join(chain))
        return
    problems = admin.validate_dependencies()
    if as_json:
        click.echo(json.dumps(jsonable({"ok": not problems, "problems": problems}), indent=2))
    elif problems:
        for problem in problems:
            click.echo(f"problem: {problem}")
    else:
        click.echo("dependencies: ok")
    if problems:
        sys.exit(1)

