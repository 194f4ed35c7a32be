"""``celery -A proj beatx <command>`` (or ``python -m celery_beatx --database-url URL
<command>``): the admin API on the command line.

The database is found exactly as beat finds it (``-s/--schedule`` included) and is never
created except by ``migrate``.  Tables for people, ``--json`` for scripts; an error is one
line on stderr with exit status 1 (2 for a usage error), never a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from ._core import Group, State

__all__ = ["beatx", "main"]

EPILOG = """\b
Examples:
  celery -A proj beatx list
  celery -A proj beatx -s /var/run/beat list      # beat runs with -s /var/run/beat
  python -m celery_beatx --database-url postgresql+psycopg://beat@db/beat list
"""


@click.group(name="beatx", cls=Group, epilog=EPILOG)
@click.option("--database-url", "--url", "database_url", envvar="BEATX_ADMIN_URL",
              metavar="URL",
              help="Use this database instead of the one beat would use for the app (env "
                   "BEATX_ADMIN_URL). Example: --database-url sqlite:////var/lib/beat.sqlite3")
@click.option("-s", "--schedule", metavar="PATH",
              help="Beat's -s/--schedule: without beatx_database_url, beat keeps its "
                   "schedules in PATH.sqlite3; give what beat is given. Example: "
                   "-s /var/run/beat")
@click.option("-v", "--verbose", is_flag=True,
              help="Say which database is used (on stderr), and show the traceback of an "
                   "unexpected error. Example: -v")
@click.pass_context
def beatx(ctx: click.Context, database_url: str | None, schedule: str | None,
          verbose: bool, **_preload: Any) -> None:
    """Manage celery-beatx schedules: the database beat uses, while it runs."""
    app = getattr(ctx.obj, "app", None)
    ctx.obj = State(app=app, database_url=database_url, schedule=schedule, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    """``python -m celery_beatx``: the same commands without a Celery app."""
    beatx.main(args=argv, prog_name="python -m celery_beatx", obj=None)


from . import operations, runs, tasks  # noqa: E402,F401  (register the commands)
