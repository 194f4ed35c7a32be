"""``python -m celery_beatx`` / ``celery beatx``: every command as a real subprocess, on SQLite
and PostgreSQL, with ``--json`` parsed and the database checked through ``BeatAdmin``.

Subprocesses cost about a second each (imports), so the read-only commands of one step run
concurrently and each process checks as much as it can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbs import fresh_database

UTC = timezone.utc
REPO = Path(__file__).resolve().parents[1]


def command(url: str | None, *args: str) -> list[str]:
    base = [sys.executable, "-m", "celery_beatx"]
    return base + (["--database-url", url] if url else []) + list(args)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("BEATX_DATABASE_URL", "BEATX_ADMIN_URL")}


def run(url: str | None, *args: str, code: int = 0, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command(url, *args), capture_output=True, text=True, timeout=90,
                          cwd=cwd, env=env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def run_all(url: str, *commands: tuple[str, ...] | tuple[tuple[str, ...], int]
            ) -> list[subprocess.CompletedProcess[str]]:
    """Run several commands at once; each is ``args`` or ``(args, expected exit status)``."""
    procs = []
    for spec in commands:
        args, code = spec if isinstance(spec[0], tuple) else (spec, 0)
        procs.append((args, code, subprocess.Popen(
            command(url, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env(), stdin=subprocess.DEVNULL)))
    out = []
    for args, code, proc in procs:
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == code, (args, proc.returncode, stdout, stderr)
        out.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return out


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def admin_of():
    from celery_beatx import BeatAdmin

    made = []

    def make(url: str) -> BeatAdmin:
        admin = BeatAdmin(url=url, auto_migrate=False)
        made.append(admin)
        return admin

    yield make
    for admin in made:
        admin.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_command(backend, tmp_path, admin_of):
    with fresh_database(backend, str(tmp_path)) as url:
        _every_command(url, tmp_path, admin_of)


def _every_command(url: str, tmp_path: Path, admin_of) -> None:  # noqa: PLR0915
    # No schema yet: a read command refuses, says where it looked, and creates nothing.
    error = one_line_error(run(url, "list", code=1))
    assert "no celery-beatx database at" in error and "migrate" in error
    if url.startswith("sqlite"):
        assert not list(tmp_path.glob("*.sqlite3*"))
    else:
        assert tables(url) == []
    assert "schema: empty ->" in run(url, "migrate").stdout

    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps([
        {"name": "b", "task": "proj.b", "schedule": {"type": "interval", "seconds": 3600},
         "group": "g"},
        {"name": "c", "task": "proj.c", "schedule": {"type": "cron", "expr": "0 3 * * *",
                                                     "timezone": "UTC"}, "group": "g"},
    ]))
    added, many = run_all(url, (
        "add", "a", "proj.a", "--every", "30s", "--args", '[1, "x"]', "--kwargs",
        '{"k": true}', "--queue", "q1", "--priority", "3", "--expires", "300", "--headers",
        '{"h": 1}', "--group", "g", "--tag", "t1", "--tag", "t2", "--retry",
        "max_retries=5,delay=30", "--alerts", '{"consecutive_failures": 2}', "--jitter", "1.5",
        "--catchup", "all", "--catchup-limit", "7", "--overlap", "skip", "--description",
        "first task", "--json"), ("add", "--from-file", str(specs), "--json"))
    a = json.loads(added.stdout)
    assert a["name"] == "a" and a["schedule"] == {"type": "interval", "seconds": 30.0}
    assert [t["name"] for t in json.loads(many.stdout)] == ["b", "c"]
    admin = admin_of(url)
    stored = admin.get("a")
    assert (stored.args, stored.kwargs, stored.queue, stored.priority, stored.expires) == \
        ([1, "x"], {"k": True}, "q1", 3, 300.0)
    assert (stored.group, stored.tags, stored.retry["max_retries"], stored.retry["delay"]) == \
        ("g", ["t1", "t2"], 5, 30.0)
    assert (stored.alerts["consecutive_failures"], stored.jitter, stored.catchup,
            stored.catchup_limit, stored.overlap, stored.description, stored.headers) == \
        (2, 1.5, "all", 7, "skip", "first task", {"h": 1})
    assert datetime.fromisoformat(a["next_run_at"]).utcoffset() is not None

    # update: the schedule (cron in a zone), a field cleared, the task renamed.
    updated = json.loads(run(url, "update", "a", "--cron", "15 6 * * *", "--timezone",
                             "Asia/Tokyo", "--clear", "tags", "--task", "proj.a2",
                             "--depends-on", "b", "--json").stdout)
    assert updated["version"] == 2 and updated["next_run_at"].endswith("+09:00")
    stored = admin.get("a")
    assert stored.schedule_dict == {"type": "cron", "expr": "15 6 * * *",
                                    "timezone": "Asia/Tokyo"}
    assert (stored.task, stored.tags, stored.depends_on) == ("proj.a2", [], ["b"])
    assert stored.next_run_at.astimezone(datetime.fromisoformat(
        updated["next_run_at"]).tzinfo).hour == 6

    # group and name forms of disable/enable; pause with a reason; run-now; backfill.
    disabled = run(url, "disable", "--group", "g", "--json")
    assert json.loads(disabled.stdout) == {"disabled": 3, "group": "g"}
    enabled, paused = run_all(url, ("enable", "c", "--json"),
                              ("pause", "b", "--reason", "maintenance", "--json"))
    assert json.loads(enabled.stdout)[0]["name"] == "c"
    assert json.loads(paused.stdout)["paused_reason"] == "maintenance"
    assert {t.name: t.enabled for t in admin.list()} == {"a": False, "b": False, "c": True}
    assert admin.get("b").paused_reason == "maintenance"
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(hours=5)).isoformat()
    resumed, queued, backfilled = run_all(
        url, ("resume", "b", "--json"), ("run-now", "a", "--json"),
        ("backfill", "b", "--start", start, "--end", now.isoformat(), "--json"))
    assert json.loads(resumed.stdout)["paused"] is False and not admin.get("b").paused
    assert json.loads(queued.stdout)["kind"] == "manual"
    assert json.loads(backfilled.stdout)["queued"] in (4, 5)  # hourly, in [now-5h, now)
    assert [r.kind for r in admin.history("a")] == ["manual"]
    assert {r.kind for r in admin.history("b")} == {"backfill"}
    assert backfilled.stderr == ""  # no progress bar when piped

    # Every read command, at once.
    export = tmp_path / "export.json"
    (listed, shown, nxt, hist, stats, versions, conflicts, alerts, health, status, deps,
     chain, exported) = run_all(
        url, ("list", "--json"), ("show", "a", "--json"), ("next", "c", "-n", "3", "--json"),
        ("history", "b", "--json"), ("stats", "a", "--json"), ("versions", "a", "--json"),
        ("conflicts", "--json"), ("alerts", "--json"), (("health", "--json"), 1),
        ("status", "--json"), ("dependencies", "--json"), ("dependencies", "a", "--json"),
        ("export", "-o", str(export)))
    assert [t["name"] for t in json.loads(listed.stdout)] == ["a", "b", "c"]
    assert json.loads(shown.stdout)["depends_on"] == ["b"]
    times = [datetime.fromisoformat(t) for t in json.loads(nxt.stdout)]
    assert len(times) == 3 and all(t.hour == 3 and t.utcoffset() == timedelta(0)
                                   for t in times)
    assert {r["kind"] for r in json.loads(hist.stdout)} == {"backfill"}
    assert json.loads(stats.stdout)["counts"] == {"pending": 1}
    assert [v["version"] for v in json.loads(versions.stdout)] == [1, 2]
    assert json.loads(conflicts.stdout) == [] and json.loads(alerts.stdout) == []
    assert json.loads(health.stdout)["healthy"] is False
    assert json.loads(status.stdout)["leader"] is None
    assert json.loads(deps.stdout) == {"ok": True, "problems": []}
    assert json.loads(chain.stdout) == ["b", "a"]
    assert {t["name"] for t in json.loads(export.read_text())["tasks"]} == {"a", "b", "c"}

    # rollback, remove; then import --replace: plan shown, refused without --yes when no
    # one can be asked, --dry-run writes nothing, --yes applies it.
    rolled, removed = run_all(url, ("rollback", "a", "1", "--json"),
                              (("remove", "c", "--json"), 0))
    assert json.loads(rolled.stdout)["version"] == 3 and admin.get("a").task == "proj.a"
    assert json.loads(removed.stdout)["removed"] == ["c"]
    admin.add("extra", "proj.extra", {"type": "interval", "seconds": 60})
    refused, dry = run_all(url, (("import", str(export), "--replace"), 1),
                           ("import", str(export), "--replace", "--dry-run", "--json"))
    assert "pass --yes" in one_line_error(refused)
    assert "remove 1" in refused.stdout and "  - extra" in refused.stdout
    plan = json.loads(dry.stdout)
    assert (plan["add"], plan["remove"], plan["dry_run"]) == (["c"], ["extra"], True)
    assert "a" in plan["change"]  # rolled back since the export
    assert {t.name for t in admin.list()} == {"a", "b", "extra"}
    done = json.loads(run(url, "import", str(export), "--replace", "--yes", "--json").stdout)
    assert done["imported"] == 3 and done["remove"] == ["extra"]
    assert {t.name for t in admin.list()} == {"a", "b", "c"}
    assert admin.get("a").task == "proj.a2"


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, admin_of):
    url = f"sqlite:///{tmp_path}/bad.sqlite3"
    run(url, "migrate")
    admin = admin_of(url)
    admin.add("keep", "proj.keep", {"type": "interval", "seconds": 60}, group="g")
    before = admin.export_state().split('"tasks"')[1]
    bad_doc = tmp_path / "bad.json"
    bad_doc.write_text("{not json")
    results = run_all(
        url,
        (("add", "x", "proj.x", "--every", "30", "--args", "not json"), 2),
        (("add", "x", "proj.x", "--every", "30", "--kwargs", "[1]"), 2),
        (("add", "x", "proj.x", "--cron", "61 * * * *"), 1),
        (("add", "x", "proj.x", "--every", "30", "--priority", "300"), 1),
        (("add", "keep", "proj.keep", "--every", "30"), 1),
        (("update", "nope", "--every", "30"), 1),
        (("disable", "keep", "nope"), 1),
        (("remove", "--group", "g"), 1),
        (("import", str(bad_doc)), 1),
        (("backfill", "keep", "--start", "yesterday", "--end", "2026-01-01"), 2),
        (("lst",), 2),
    )
    messages = [one_line_error(r) for r in results]
    assert "--args is not valid JSON" in messages[0]
    assert "--kwargs must be a JSON object" in messages[1]
    assert "61" in messages[2] and "priority 300" in messages[3]
    assert "exists already" in messages[4] and "'nope' does not exist" in messages[5]
    assert "'nope' does not exist" in messages[6] and "pass --yes" in messages[7]
    assert "not valid JSON" in messages[8] and "InvalidSchedule" not in messages[8]
    assert "--start 'yesterday'" in messages[9] and "Did you mean 'list'" in messages[10]
    assert admin.export_state().split('"tasks"')[1] == before


def test_database_url_errors_are_one_line(tmp_path):
    urls = ("postgres://u@127.0.0.1/x", "mysql://root@127.0.0.1/test", "not a url",
            "postgresql+psycopg://postgres@127.0.0.1:5432/beatx_missing_db")
    procs = [subprocess.Popen(command(url, "show", "a"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env(), cwd=tmp_path)
             for url in urls]
    dialect, driver, wrong, absent = [
        subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=60)) for p in procs]
    assert all(p.returncode == 1 for p in procs)
    assert "unknown database dialect 'postgres'" in one_line_error(dialect) and \
        "did you mean postgresql+psycopg://" in dialect.stderr
    assert 'pip install "celery-beatx-sql[mysql]"' in one_line_error(driver)
    assert "is not a database URL" in one_line_error(wrong)
    assert "beatx_missing_db" in one_line_error(absent)
    assert list(tmp_path.iterdir()) == []


def test_progress_shows_on_a_terminal_only(tmp_path):
    import pty

    url = f"sqlite:///{tmp_path}/p.sqlite3"
    run(url, "migrate")
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"format": "celery-beatx/1", "tasks": [
        {"name": f"t{i}", "task": "proj.t", "schedule": {"type": "interval", "seconds": 60}}
        for i in range(300)]}))
    master, slave = pty.openpty()
    proc = subprocess.Popen(command(url, "import", str(doc)), stdout=subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL, env=env(), text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=60)
    os.close(master)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "imported 300 task(s)" in stdout
    assert "checking 300 task(s)" in terminal or "importing 300 task(s)" in terminal


def test_help_documents_every_option_with_an_example():
    from click.testing import CliRunner

    from celery_beatx.cli import beatx

    runner = CliRunner()
    for name, cmd in sorted(beatx.commands.items()):
        assert cmd.help and "Example" in (cmd.epilog or ""), name
        for param in cmd.params:
            if isinstance(param, __import__("click").Option) and param.name != "help":
                assert param.help and "Example" in param.help, (name, param.name)
        out = runner.invoke(beatx, [name, "--help"])
        assert out.exit_code == 0 and "celery -A proj beatx" in out.output, name
    for param in beatx.params:
        assert param.help and "Example" in param.help, param.name


def test_database_resolution_is_beats(tmp_path, monkeypatch):
    """The CLI's rule and the scheduler's (BeatxConfig) give the same URL."""
    from celery import Celery

    from celery_beatx.cli._core import resolve_target
    from celery_beatx.config import BeatxConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BEATX_DATABASE_URL", raising=False)
    app = Celery("r", set_as_current=False)
    cases = [None, "beat", str(tmp_path / "abs" / "beat")]
    for schedule in cases:
        assert resolve_target(app, None, schedule).url == \
            BeatxConfig.from_app(app, schedule).database_url
    app.conf.beat_schedule_filename = "conf-file"
    assert resolve_target(app, None, None).url == BeatxConfig.from_app(app).database_url \
        == f"sqlite:///{tmp_path}/conf-file.sqlite3"
    monkeypatch.setenv("BEATX_DATABASE_URL", "sqlite:////env.sqlite3")
    assert resolve_target(app, None, "beat").url == "sqlite:////env.sqlite3" == \
        BeatxConfig.from_app(app, "beat").database_url
    app.conf.beatx_database_url = "sqlite:////conf.sqlite3"
    found = resolve_target(app, None, "beat")
    assert found.url == BeatxConfig.from_app(app, "beat").database_url
    assert found.origin == "the app's beatx_database_url"
    assert resolve_target(app, "sqlite:////given.sqlite3", "beat").url == \
        "sqlite:////given.sqlite3"


def test_relative_times():
    from celery_beatx.cli._core import relative, when

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert relative(now + timedelta(minutes=4), now) == "in 4 min"
    assert relative(now - timedelta(hours=3), now) == "3 h ago"
    assert relative(now + timedelta(seconds=0.2), now) == "now"
    assert relative(now - timedelta(days=2, hours=1), now) == "2 d ago"
    assert when(now, "Europe/Berlin", now) == "2026-03-01 13:00:00 CET (now)"
