"""``celery -A app beatx`` next to a real ``celery beat -S beatx -s DIR/beat``: the same
database from another directory, nothing created where there is none, the app's zone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

pytestmark = [pytest.mark.timeout(120)]

APP = textwrap.dedent('''
    from celery import Celery
    from celery_beatx import every

    app = Celery("cliapp", broker="memory://")
    app.conf.timezone = "Europe/Berlin"
    app.conf.beatx_sync_interval = 0.5
    app.conf.beat_schedule = {"tick": {"task": "cliapp.tick", "schedule": every(seconds=60)}}


    @app.task(name="cliapp.tick")
    def tick():
        return "tick"
''')


def celery(*args: str, cwd: Path, app_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BEATX_DATABASE_URL", "BEATX_ADMIN_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(app_dir), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "cliapp", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def wait_for_task(url: str, name: str, beat: subprocess.Popen[str], seconds: float) -> None:
    from celery_beatx import BeatAdmin, TaskNotFound

    deadline = time.monotonic() + seconds
    path = url.removeprefix("sqlite:///")
    while time.monotonic() < deadline:
        assert beat.poll() is None, beat.communicate()
        if os.path.exists(path):
            admin = BeatAdmin(url=url, auto_migrate=False)
            try:
                admin.get(name)
                return
            except (TaskNotFound, Exception):
                pass
            finally:
                admin.engine.dispose()
        time.sleep(0.2)
    raise AssertionError(f"beat did not store {name!r} within {seconds} s")


def test_beatx_finds_beats_database_from_another_directory(tmp_path):
    app_dir, run_dir, other = tmp_path / "app", tmp_path / "run", tmp_path / "other"
    for d in (app_dir, run_dir, other):
        d.mkdir()
    (app_dir / "cliapp.py").write_text(APP)
    schedule = str(run_dir / "beat")
    url = f"sqlite:///{schedule}.sqlite3"
    beat = celery("beat", "-S", "beatx", "-s", schedule, "--pidfile=", "--loglevel=INFO",
                  cwd=app_dir, app_dir=app_dir)
    try:
        wait_for_task(url, "tick", beat, 60)
        listed = celery("beatx", "-s", schedule, "list", cwd=other, app_dir=app_dir)
        missing = celery("beatx", "list", cwd=other, app_dir=app_dir)
        added = celery("beatx", "-s", schedule, "add", "nine", "cliapp.tikc", "--cron",
                       "0 9 * * *", "--json", cwd=other, app_dir=app_dir)
        out, err = listed.communicate(timeout=60)
        assert listed.returncode == 0, err
        assert f"database: {url} (from -s {schedule})" in out
        assert "tick" in out and "cliapp.tick" in out and "every 1 min" in out

        out, err = missing.communicate(timeout=60)
        assert missing.returncode == 1 and out == ""
        assert err.strip() == (
            f"error: no celery-beatx database at sqlite:///{other}/celerybeat-schedule.sqlite3"
            " (from beat's default schedule file in the current directory); is beat using "
            "`-s …`? Give the same -s here, or run `celery -A cliapp beatx migrate` to "
            "create one.")
        assert list(other.iterdir()) == []  # nothing created

        out, err = added.communicate(timeout=60)
        assert added.returncode == 0, err
        assert "warning: task 'cliapp.tikc' is not registered in the app 'cliapp'; did you " \
               "mean 'cliapp.tick'?" in err
        info = json.loads(out)
        berlin = ZoneInfo("Europe/Berlin")
        nxt = datetime.fromisoformat(info["next_run_at"])
        assert (nxt.hour, nxt.minute, nxt.utcoffset()) == \
            (9, 0, nxt.astimezone(berlin).utcoffset())
        assert info["schedule"]["timezone"] == "Europe/Berlin"

        from celery_beatx import BeatAdmin

        admin = BeatAdmin(url=url, auto_migrate=False)
        try:
            stored = admin.get("nine").next_run_at.astimezone(berlin)
            assert (stored.hour, stored.minute) == (9, 0)
        finally:
            admin.engine.dispose()

        strict = celery("beatx", "-s", schedule, "add", "ten", "cliapp.tikc", "--every", "1h",
                        "--strict", cwd=other, app_dir=app_dir)
        removed = celery("beatx", "-s", schedule, "remove", "tick", cwd=other, app_dir=app_dir)
        out, err = strict.communicate(timeout=60)
        assert strict.returncode == 1 and "refused: --strict" in err
        out, err = removed.communicate(timeout=60)
        assert removed.returncode == 0 and "removed tick" in out
        assert "comes back at the next beat start unless you remove it from beat_schedule" \
            in err
    finally:
        beat.send_signal(signal.SIGTERM)
        try:
            beat.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.communicate()
