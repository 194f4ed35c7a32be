"""``celery beatx`` through the real celery entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from celery_beatx import migrate


def beatx(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "beatx", "--url", url, *args],
                          capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/cli.sqlite3"


def test_migrate_add_list_show_next_disable_remove(url, tmp_path):
    assert f"-> {migrate.head_revision()}" in beatx(url, "migrate").stdout
    out = beatx(url, "add", "hello", "proj.hello", "--every", "30", "--args", "[1]").stdout
    assert "added hello" in out
    beatx(url, "add", "nine", "proj.nine", "--cron", "0 9 * * 1-5", "--timezone",
          "Europe/Paris")
    listed = json.loads(beatx(url, "list", "--json").stdout)
    assert [t["name"] for t in listed] == ["hello", "nine"]
    assert listed[0]["args"] == [1] and listed[0]["schedule"]["seconds"] == 30
    assert "cron 0 9 * * 1-5 (Europe/Paris)" in beatx(url, "list").stdout
    shown = json.loads(beatx(url, "show", "nine", "--json").stdout)
    assert shown["schedule"]["timezone"] == "Europe/Paris"
    nxt = json.loads(beatx(url, "next", "nine", "-n", "3", "--json").stdout)
    assert len(nxt) == 3 and all(t.endswith("+00:00") for t in nxt)
    beatx(url, "disable", "hello")
    assert json.loads(beatx(url, "list", "--disabled", "--json").stdout)[0]["name"] == "hello"
    doc = tmp_path / "state.json"
    beatx(url, "export", "-o", str(doc))
    beatx(url, "remove", "hello")
    assert [t["name"] for t in json.loads(beatx(url, "list", "--json").stdout)] == ["nine"]
    assert "imported 2" in beatx(url, "import", str(doc)).stdout
    assert len(json.loads(beatx(url, "list", "--json").stdout)) == 2


def test_errors_exit_1_with_a_message(url):
    bad = beatx(url, "add", "x", "proj.x", "--cron", "61 * * * *", check=False)
    assert bad.returncode == 1 and "InvalidSchedule" in bad.stderr and "61" in bad.stderr
    missing = beatx(url, "disable", "nope", check=False)
    assert missing.returncode == 1 and "TaskNotFound" in missing.stderr


def test_cron_aliases_and_reboot(url):
    beatx(url, "add", "nightly", "proj.nightly", "--cron", "@daily")
    shown = json.loads(beatx(url, "show", "nightly", "--json").stdout)
    assert shown["schedule"]["expr"] == "0 0 * * *"
    reboot = beatx(url, "add", "boot", "proj.boot", "--cron", "@reboot", check=False)
    assert reboot.returncode == 1 and "InvalidSchedule" in reboot.stderr \
        and "@reboot" in reboot.stderr
    assert [t["name"] for t in json.loads(beatx(url, "list", "--json").stdout)] == ["nightly"]


def test_health_status_alerts_and_conflicts(url):
    from celery_beatx import BeatAdmin

    beatx(url, "migrate")
    beatx(url, "add", "a", "proj.a", "--cron", "0 3 * * *")
    beatx(url, "add", "b", "proj.b", "--cron", "0 3 * * *")
    unhealthy = beatx(url, "health", check=False)
    assert unhealthy.returncode == 1
    assert "UNHEALTHY" in unhealthy.stdout and "no beat has written a heartbeat" \
        in unhealthy.stdout
    admin = BeatAdmin(url=url)
    try:
        with admin.repo.transaction() as session:
            admin.repo.heartbeat(session, "cli-beat:1", role="leader",
                                 started_at=admin.repo.db_now(session), host="h", pid=1,
                                 every=1.0)
            admin.repo.add_alert(session, level="critical", kind="invalid_schedule",
                                 task_name="a", message="task 'a' cannot be scheduled",
                                 at=admin.repo.db_now(session))
    finally:
        admin.engine.dispose()
    healthy = beatx(url, "health", "--json")
    report = json.loads(healthy.stdout)
    assert report["healthy"] is True and report["leader"] == "cli-beat:1"
    status = beatx(url, "status").stdout
    assert "cli-beat:1" in status and "Open alerts (1)" in status
    assert beatx(url, "health", "--instance", "nope", check=False).returncode == 1
    assert beatx(url, "health", "--instance", "cli-beat").returncode == 0
    alerts = json.loads(beatx(url, "alerts", "--level", "critical", "--json").stdout)
    assert [a["kind"] for a in alerts] == ["invalid_schedule"]
    found = json.loads(beatx(url, "conflicts", "--json").stdout)
    assert [(c["task1"], c["task2"], c["severity"]) for c in found] == [("a", "b", "high")]
    assert "a" in beatx(url, "conflicts", "--high").stdout
