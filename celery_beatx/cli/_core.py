"""What every ``beatx`` command shares: finding the database exactly as beat does, opening it
without ever creating one, one-line errors, and the output helpers (tables, times, progress).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import click

from ..errors import BeatxError

UTC = timezone.utc

#: The distribution's extras that bring a driver, by SQLAlchemy backend name.
DRIVER_EXTRAS = {"postgresql": ("postgres", "postgresql+psycopg"),
                 "mysql": ("mysql", "mysql+pymysql"), "mariadb": ("mysql", "mariadb+pymysql")}
#: URL schemes people type that SQLAlchemy does not know, and what they mean.
SCHEME_FIXES = {"postgres": "postgresql+psycopg", "pg": "postgresql+psycopg",
                "psql": "postgresql+psycopg", "maria": "mariadb+pymysql",
                "sqlite3": "sqlite"}
KNOWN_SCHEMES = ("sqlite", "postgresql+psycopg", "mysql+pymysql", "mariadb+pymysql")


class CliError(click.ClickException):
    """A failure the user can fix: one line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineUsageError(click.UsageError):
    """A usage error (exit status 2) printed as one line that says where the help is."""

    def show(self, file: Any = None) -> None:
        where = f" (see `{self.ctx.command_path} --help`)" if self.ctx is not None else ""
        click.echo(f"error: {self.format_message()}{where}", err=True)


def usage(message: str) -> OneLineUsageError:
    """A usage error for the current command."""
    return OneLineUsageError(message, click.get_current_context(silent=True))


class _OneLine:
    """Turn click's own parse errors (missing argument, bad option...) into one line."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc]
        except click.UsageError as exc:
            if isinstance(exc, OneLineUsageError):
                raise
            ctx = exc.ctx or parent
            raise OneLineUsageError(exc.format_message(), ctx) from None


class Command(_OneLine, click.Command):
    """A ``beatx`` command: parse errors are one line."""


class Group(_OneLine, click.Group):
    """The ``beatx`` group: unknown commands and parse errors are one line."""

    command_class = Command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            if isinstance(exc, OneLineUsageError):
                raise
            raise OneLineUsageError(exc.format_message(), ctx) from None


# -- which database ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The database a command works on, and why that one."""

    url: str
    #: Where the URL came from, in words ("-s /var/run/beat", "the app's beatx_database_url").
    origin: str
    #: Whether the URL was derived from beat's schedule filename (so ``-s`` matters).
    from_schedule: bool = False

    @property
    def shown(self) -> str:
        """The URL with any password hidden."""
        return hide_password(self.url)


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def resolve_target(app: Any, database_url: str | None, schedule: str | None) -> Target:
    """The database beat uses for ``app`` when started with ``-s schedule``.

    The same rule as :meth:`celery_beatx.config.BeatxConfig.from_app` (what
    ``celery beat -S beatx`` builds): ``--database-url``, else the app's
    ``beatx_database_url``, else ``BEATX_DATABASE_URL``, else a SQLite file named after
    beat's schedule filename (``-s``, else the app's ``beat_schedule_filename``, else
    ``celerybeat-schedule``) plus ``.sqlite3``, relative to the current directory.
    """
    from ..config import default_database_url

    if database_url:
        return Target(database_url, "--database-url")
    conf = app.conf if app is not None else None
    if conf is not None and conf.get("beatx_database_url"):
        return Target(conf.get("beatx_database_url"), "the app's beatx_database_url")
    if os.environ.get("BEATX_DATABASE_URL"):
        return Target(os.environ["BEATX_DATABASE_URL"], "BEATX_DATABASE_URL")
    setting = conf.get("beat_schedule_filename") if conf is not None else None
    base = schedule or setting
    url = default_database_url(base)
    if schedule:
        origin = f"-s {schedule}"
    elif setting and setting != "celerybeat-schedule":
        origin = f"the app's beat_schedule_filename {setting!r}"
    else:
        origin = "beat's default schedule file in the current directory"
    return Target(url, origin, from_schedule=True)


@dataclass
class State:
    """What the ``beatx`` group's options chose, kept on the click context."""

    app: Any
    database_url: str | None
    schedule: str | None
    verbose: bool
    admin: Any = None
    target: Target | None = None


def state(ctx: click.Context | None = None) -> State:
    ctx = ctx or click.get_current_context()
    found = ctx.find_object(State)
    if found is None:  # pragma: no cover - the group always sets it
        raise click.UsageError("the beatx group was not invoked")
    return found


def app_of(ctx: click.Context | None = None) -> Any:
    return state(ctx).app


def target(ctx: click.Context | None = None) -> Target:
    st = state(ctx)
    if st.target is None:
        st.target = resolve_target(st.app, st.database_url, st.schedule)
    return st.target


def _engine(tgt: Target, app: Any) -> Any:
    """An engine for ``tgt`` (nothing is connected yet); bad URLs and missing drivers fail
    here with one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from ..store.engine import make_engine

    options = dict(app.conf.get("beatx_engine_options") or {}) if app is not None else {}
    try:
        parsed = make_url(tgt.url)
    except ArgumentError:
        raise CliError(f"{tgt.shown!r} (from {tgt.origin}) is not a database URL; examples: "
                       "sqlite:////var/lib/beat.sqlite3, "
                       "postgresql+psycopg://user@host/db") from None
    try:
        return make_engine(tgt.url, options)
    except NoSuchModuleError:
        scheme = parsed.drivername
        fix = SCHEME_FIXES.get(scheme.split("+")[0]) or next(
            iter(difflib.get_close_matches(scheme, KNOWN_SCHEMES, n=1)), None)
        hint = f"; did you mean {fix}://...?" if fix else \
            f"; use one of {', '.join(s + '://' for s in KNOWN_SCHEMES)}"
        raise CliError(f"unknown database dialect {scheme!r} in {tgt.shown} "
                       f"(from {tgt.origin}){hint}") from None
    except ImportError as exc:
        backend = parsed.get_backend_name()
        extra, scheme = DRIVER_EXTRAS.get(backend, (None, None))
        install = (f'pip install "celery-beatx-sql[{extra}]" and use a {scheme}:// URL'
                   if extra else "install the driver SQLAlchemy names for it")
        raise CliError(f"the database driver for {parsed.drivername}:// is not installed "
                       f"({exc}); {install}") from None


def _sqlite_file(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return database


def no_database(tgt: Target, why: str = "") -> CliError:
    """The one-line error for a database that does not exist (nothing was created)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is None or root.command.name == "celery":
        given = root.params.get("app") if root is not None else None
        main = given if isinstance(given, str) else "proj"
        migrate = f"celery -A {main} beatx" + (
            f" -s {state().schedule}" if state().schedule else "") + " migrate"
    else:
        migrate = f"{root.info_name} --database-url {tgt.shown} migrate"
    if tgt.from_schedule:
        hint = f"is beat using `-s …`? Give the same -s here, or run `{migrate}` to create one."
    else:
        hint = f"is beat using another database? Run `{migrate}` to create one."
    return CliError(f"no celery-beatx database at {tgt.shown} (from {tgt.origin}){why}; {hint}")


def open_admin(ctx: click.Context | None = None, *, create: bool = False) -> Any:
    """The :class:`~celery_beatx.BeatAdmin` on the resolved database.

    Unless ``create`` (``migrate``), a database that does not exist or has no celery-beatx
    schema is an error and nothing is created: no SQLite file, no table.
    """
    from ..admin import BeatAdmin
    from ..migrate import current_revision

    st = state(ctx)
    if st.admin is not None:
        return st.admin
    tgt = target(ctx)
    if st.verbose:
        click.echo(f"database: {tgt.shown} (from {tgt.origin})", err=True)
    engine = _engine(tgt, st.app)
    path = _sqlite_file(tgt.url)
    if not create and path is not None and not os.path.exists(path):
        raise no_database(tgt)
    if not create:
        try:
            revision = current_revision(engine)
        except Exception as exc:
            engine.dispose()
            raise connect_error(tgt, exc) from None
        if revision is None:
            engine.dispose()
            raise no_database(tgt, ": the database exists but has no celery-beatx tables")
    st.admin = BeatAdmin(st.app, engine=engine) if st.app is not None \
        else BeatAdmin(engine=engine)
    ctx = ctx or click.get_current_context()
    ctx.call_on_close(engine.dispose)
    return st.admin


def connect_error(tgt: Target, exc: BaseException) -> CliError:
    from ..beat.outage import cause

    return CliError(f"cannot use the database {tgt.shown} (from {tgt.origin}): {cause(exc)}")


def errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report library and database errors as one line (exit 1), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BeatxError as exc:
            raise CliError(one_line(str(exc))) from None
        except SQLAlchemyError as exc:
            raise connect_error(target(), exc) from None
        except Exception as exc:
            if state().verbose:
                raise
            raise CliError(f"unexpected {type(exc).__name__}: {one_line(str(exc))} "
                           "(run with --verbose for the traceback)") from None

    return wrapper


def one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines)[:1000] if lines else "(no message)"


# -- Celery app checks -------------------------------------------------------------------------


def check_task_name(task: str, strict: bool) -> None:
    """Warn (refuse with ``strict``) when the app is loaded and ``task`` is not registered.

    The app's task modules are imported first (as a worker does); an app that registers no
    task of its own (no ``-A``) is not judged.
    """
    app = app_of()
    if app is None:
        if strict:
            raise CliError("--strict needs the Celery app (celery -A proj beatx ...) to know "
                           "the registered task names")
        return
    try:
        app.loader.import_default_modules()
    except Exception as exc:  # the check is advice; the app's import problem is its own
        click.echo(f"warning: cannot import the app's task modules to check {task!r}: "
                   f"{one_line(str(exc))}", err=True)
        return
    registered = sorted(n for n in app.tasks if not n.startswith("celery."))
    if task in app.tasks:
        return
    if not registered:
        if strict:
            raise CliError(f"--strict: the app registers no task, so {task!r} cannot be "
                           "checked (is -A the right app?)")
        return
    close = difflib.get_close_matches(task, registered, n=1, cutoff=0.6)
    message = f"task {task!r} is not registered in the app {app.main!r}" + (
        f"; did you mean {close[0]!r}?" if close else "")
    if strict:
        raise CliError(message + " (refused: --strict)")
    click.echo(f"warning: {message} (a worker would reject it; --strict refuses)", err=True)


def app_zone() -> str:
    """The zone times are shown in when a task has none: the app's, else UTC."""
    from ..config import app_timezone

    app = app_of()
    if app is None:
        return "UTC"
    try:
        return app_timezone(app)
    except BeatxError:
        return "UTC"


# -- output ------------------------------------------------------------------------------------


def console(err: bool = False) -> Any:
    """A rich console: on a terminal, its width; piped, wide enough never to wrap a row."""
    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, highlight=False, width=None if tty else 4000,
                   no_color=not tty or bool(os.environ.get("NO_COLOR")), soft_wrap=not tty)


#: A rule under the header, in ASCII when the output is not a terminal.
_ASCII_HEAD = "    \n    \n -- \n    \n    \n    \n    \n    \n"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], title: str | None = None
          ) -> None:
    """Print an aligned table (``rows`` of already formatted cells)."""
    from rich import box
    from rich.table import Table

    if not rows:
        click.echo("(none)" if title is None else f"{title}: none")
        return
    out = console()
    style = box.SIMPLE_HEAD if out.is_terminal else box.Box(_ASCII_HEAD, ascii=True)
    grid = Table(box=style, show_edge=False, pad_edge=False, title=title,
                 title_justify="left", header_style="bold", safe_box=False)
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*[cell(c) for c in row])
    print_rich(grid, out)


def print_rich(renderable: Any, out: Any = None) -> None:
    """Print a rich renderable without the trailing blanks rich pads lines with."""
    out = out or console()
    with out.capture() as captured:
        out.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()),
               color=out.is_terminal)


def cell(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, sort_keys=True)) if value else "-"
    return escape(str(value))


def emit_json(data: Any, zone: Callable[[Any], str] | str = "UTC") -> None:
    """Print ``data`` as JSON; datetimes as ISO 8601 with their offset, in ``zone``."""
    click.echo(json.dumps(jsonable(data, zone), indent=2, sort_keys=True))


def jsonable(value: Any, zone: str | Callable[[Any], str] = "UTC") -> Any:
    from dataclasses import asdict, is_dataclass

    z = zone if isinstance(zone, str) else "UTC"
    if isinstance(value, datetime):
        return in_zone(value, z).isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value), zone)
    if isinstance(value, dict):
        return {str(k): jsonable(v, zone) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, zone) for v in value]
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict(), zone)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def in_zone(value: datetime, zone: str) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(zone))


def relative(value: datetime, now: datetime) -> str:
    """``"in 4 min"``, ``"3 h ago"``, ``"now"``: how far ``value`` is from ``now``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (value - now).total_seconds()
    size = abs(seconds)
    if size < 1:
        return "now"
    if size < 60:
        amount = f"{size:.0f} s"
    elif size < 3600:
        amount = f"{size / 60:.0f} min"
    elif size < 86400:
        hours = size / 3600
        amount = f"{hours:.1f} h".replace(".0 h", " h") if hours < 10 else f"{hours:.0f} h"
    else:
        amount = f"{size / 86400:.0f} d"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def when(value: datetime | None, zone: str, now: datetime | None = None) -> str:
    """A time for people: local to ``zone``, with its zone abbreviation and how far it is."""
    if value is None:
        return "-"
    local = in_zone(value, zone)
    now = now or datetime.now(UTC)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()} ({relative(value, now)})"


def task_zone(info: Any, default: str) -> str:
    """The zone a task's times are read in: its schedule's, else its calendar's, else
    ``default`` (the app's)."""
    data = getattr(info, "schedule_dict", None) or {}
    zone = data.get("timezone") if isinstance(data, dict) else None
    if not zone and isinstance(getattr(info, "calendar", None), dict):
        zone = info.calendar.get("timezone")
    if isinstance(zone, str):
        try:
            ZoneInfo(zone)
            return zone
        except Exception:
            pass
    return default


@contextmanager
def progress(description: str, total: int | None, enabled: bool) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr while the body runs, only when stderr is a terminal and
    ``enabled`` (not with ``--json``); yields ``advance()``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console(err=True), transient=True) as bar:
        job = bar.add_task(description, total=total)
        yield lambda: bar.advance(job)
        if total is not None:
            bar.update(job, completed=total)


def confirm(question: str, yes: bool, what: str) -> None:
    """Ask ``question`` on a terminal unless ``yes``; refuse (exit 1) when no one can be
    asked (stdin is not a terminal) or the answer is no."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"{what}; pass --yes to do it without being asked (stdin is not a "
                       "terminal)")
    if not click.confirm(question, default=False, err=True):
        raise CliError("nothing was changed (not confirmed)")
