"""Run commands: history, stats, run-now, backfill, pause, resume."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from . import beatx
from ._core import app_zone, emit_json, errors, open_admin, progress, table, task_zone, when
from ._fields import instant
from .tasks import JSON_HELP, info_json

UTC = timezone.utc


def _zone_of(admin, name: str) -> str:  # type: ignore[no-untyped-def]
    from ..errors import TaskNotFound

    try:
        return task_zone(admin.get(name), app_zone())
    except TaskNotFound:  # a removed task's runs stay readable
        return app_zone()


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx history nightly
  celery -A proj beatx history nightly --limit 100 --json""")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, None),
              help="How many runs, newest first. Example: --limit 100")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def history(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """Show the newest runs of a task (a removed task's runs too)."""
    admin = open_admin(ctx)
    zone = _zone_of(admin, name)
    runs = admin.history(name, limit)
    if as_json:
        emit_json(runs, zone)
        return
    now = datetime.now(UTC)
    table([[when(r.scheduled_at, zone, now), r.kind, r.status, r.attempt,
            f"{r.runtime:.3f} s" if r.runtime is not None else None, r.worker, r.task_id,
            r.reason or r.error] for r in runs],
          ["scheduled", "kind", "status", "attempt", "runtime", "worker", "task id",
           "reason / error"])


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx stats nightly
  celery -A proj beatx stats nightly --json""")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def stats(ctx: click.Context, name: str, as_json: bool) -> None:
    """Counts per status, success rate, mean and p95 runtime and last error of a task."""
    admin = open_admin(ctx)
    zone = _zone_of(admin, name)
    found = admin.stats(name)
    if as_json:
        emit_json(found, zone)
        return
    rate = f"{found.success_rate:.1%}" if found.success_rate is not None else None
    table([["runs kept", found.total],
           ["by status", ", ".join(f"{k} {v}" for k, v in found.counts.items()) or None],
           ["success rate", rate],
           ["mean runtime", f"{found.mean_runtime:.3f} s" if found.mean_runtime is not None
            else None],
           ["p95 runtime", f"{found.p95_runtime:.3f} s" if found.p95_runtime is not None
            else None],
           ["duplicates", found.duplicates],
           ["last error", found.last_error],
           ["last error at", when(found.last_error_at, zone)
            if found.last_error_at else None]],
          ["statistic", "value"], title=f"stats of {name}")


@beatx.command(name="run-now", epilog="""\b
Example:
  celery -A proj beatx run-now nightly""")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def run_now(ctx: click.Context, name: str, as_json: bool) -> None:
    """Queue one run of a task now (beat sends it within a second); its schedule stays."""
    admin = open_admin(ctx)
    zone = _zone_of(admin, name)
    run = admin.run_now(name)
    if as_json:
        emit_json(run, zone)
    else:
        click.echo(f"queued a run of {name} (task id {run.task_id}); a running beat sends it "
                   "within beatx_sync_interval")


@beatx.command(epilog="""\b
Examples:
  celery -A proj beatx backfill nightly --start 2026-03-01 --end 2026-03-08
  celery -A proj beatx backfill poll --start 2026-03-01T09:00+01:00 --end 2026-03-01T12:00+01:00""")
@click.argument("name")
@click.option("--start", required=True, metavar="TIME",
              help="First instant (ISO 8601; without an offset: in the task's zone). Example: "
                   "--start 2026-03-01")
@click.option("--end", required=True, metavar="TIME",
              help="End instant, excluded, not in the future. Example: --end 2026-03-08")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def backfill(ctx: click.Context, name: str, start: str, end: str, as_json: bool) -> None:
    """Queue a run for each occurrence of the task's schedule in [START, END)."""
    admin = open_admin(ctx)
    zone = _zone_of(admin, name)
    begin, finish = instant(start, "--start", zone), instant(end, "--end", zone)
    with progress(f"backfilling {name}", None, not as_json):
        count = admin.backfill(name, begin, finish)
    if as_json:
        emit_json({"name": name, "queued": count, "start": begin, "end": finish}, zone)
    else:
        click.echo(f"queued {count} run(s) of {name} from {when(begin, zone)} to "
                   f"{when(finish, zone)}")


@beatx.command(epilog="""\b
Example:
  celery -A proj beatx pause nightly --reason "warehouse migration, ticket OPS-42\"""")
@click.argument("name")
@click.option("--reason", default="", help="Why (kept with who and when). Example: "
                                           "--reason 'warehouse migration'")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def pause(ctx: click.Context, name: str, reason: str, as_json: bool) -> None:
    """Hold a task back until `resume` (not a definition change)."""
    info = open_admin(ctx).pause(name, reason)
    if as_json:
        emit_json(info_json(info, app_zone()))
    else:
        click.echo(f"paused {name}" + (f": {reason}" if reason else ""))


@beatx.command(epilog="""\b
Example:
  celery -A proj beatx resume nightly""")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.pass_context
@errors
def resume(ctx: click.Context, name: str, as_json: bool) -> None:
    """Let beat send a paused task again; missed runs follow its catchup policy."""
    info = open_admin(ctx).resume(name)
    zone = task_zone(info, app_zone())
    if as_json:
        emit_json(info_json(info, zone))
    else:
        click.echo(f"resumed {name}; next run {when(info.next_run_at, zone)}")
