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
